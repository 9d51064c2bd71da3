"""The CPU backends side by side: eager PyTorch, ONNX Runtime and AOTInductor packages of the same weights, per
component and for a whole run, in one process, alternating call by call. `--backend auto`'s CPU order
(dcrt/backends/select.py, AUTO_ORDER) rests on this measurement.

    python benchmarks/cpu_backends.py --res tiny [--height 256 --width 256] [--threads 1] [--repeat 15]
        [--root DIR] [--out benchmarks/results]

Exports the preset's seeded random weights to ONNX (fp32, `dcrt export`'s code) and builds its AOTInductor packages
(portable AVX2, `dcrt build --engine aoti`'s code) into a fresh root (or reuses up-to-date ones under --root), then,
with torch and every ONNX Runtime session limited to --threads intra-op threads, times each component on the same
inputs: one warm-up call per runtime, then --repeat rounds of one call each, the runtimes' order rotating every
round so none always runs first after another's cache traffic. Medians; ratios are ONNX Runtime time / AOTInductor
time measured in this run (above 1: AOTInductor is faster). The whole run (conditioning, SAMPLING_STEPS steps,
decode) alternates the same way. Prints a Markdown table; writes JSON (cpu-backends-<res>-<h>x<w>-t<threads>.json)
with the conditions (device, versions, load).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import dcrt  # noqa: E402
from dcrt.artifacts.aoti_build import AotiConfig, build_aoti_bundle  # noqa: E402
from dcrt.artifacts.aoti_bundle import detect_aoti_target  # noqa: E402
from dcrt.artifacts.export import ExportRequest, export_model, graph_modules, relative_error  # noqa: E402
from dcrt.artifacts.graphs import sample_inputs  # noqa: E402
from dcrt.backends.aoti_backend import open_aoti  # noqa: E402
from dcrt.backends.onnxruntime_backend import open_onnxruntime  # noqa: E402
from dcrt.bench import environment  # noqa: E402
from dcrt.families.dynamicrafter.torch_backend import TorchBackend  # noqa: E402
from dcrt.weights import Weights  # noqa: E402

SAMPLING_STEPS = 5
RUNTIMES = ("eager", "ort", "aoti")


def limit_threads(threads: int) -> None:
    """torch (and so the AOTInductor packages, which run on torch's pool) and every ONNX Runtime session made from
    now on get `threads` intra-op threads."""
    import onnxruntime

    torch.set_num_threads(threads)
    options = onnxruntime.SessionOptions

    def with_threads():
        made = options()
        made.intra_op_num_threads = threads
        return made

    onnxruntime.SessionOptions = with_threads


def rotating_medians(calls: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Median seconds per call, one warm-up each, then `repeat` rounds with the order rotated every round."""
    for call in calls.values():
        call()
    names = list(calls)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeat):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            start = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def component_rows(model, backends: dict, repeat: int) -> dict[str, dict]:
    eager = graph_modules(model, torch.float32)
    rows = {}
    for name, spec in backends["ort"].specs.items():
        inputs = sample_inputs(spec, model.preset, seed=1)  # at the graphs' size: the spec holds the shapes
        with torch.inference_mode():
            want = eager[name](*inputs)
            errors = {}
            for runtime in ("ort", "aoti"):
                got = backends[runtime]._run_all(name, *inputs)
                errors[runtime] = relative_error(got if len(got) > 1 else got[0], want)
            calls = {
                "eager": lambda: eager[name](*inputs),
                "ort": lambda: backends["ort"]._run_all(name, *inputs),
                "aoti": lambda: backends["aoti"]._run_all(name, *inputs),
            }
            seconds = rotating_medians(calls, repeat)
        rows[name] = {f"{r}_ms": seconds[r] * 1e3 for r in RUNTIMES} | {
            "ort_over_aoti": seconds["ort"] / seconds["aoti"],
            "rel_error": errors,
        }
    return rows


def whole_run(model, backends: dict, height: int, width: int, repeat: int) -> dict:
    image = (np.random.default_rng(0).random((height, width, 3)) * 255).astype(np.uint8)
    mode = model.preset.modes[0]

    size = {"height": height, "width": width, "steps": SAMPLING_STEPS, "seed": 1}

    def run(backend):
        if mode == "interpolate":
            return lambda: dcrt.interpolate(backend, image, image, "a boat", **size)
        return lambda: dcrt.animate(backend, image, "a boat", **size)

    seconds = rotating_medians({r: run(backends[r]) for r in RUNTIMES}, repeat)
    return {"mode": mode, "steps": SAMPLING_STEPS} | {f"{r}_s": seconds[r] for r in RUNTIMES}


def markdown(result: dict) -> str:
    env = result["environment"]
    lines = [
        f"# CPU backends side by side: {result['preset']} at {result['height']}x{result['width']}",
        "",
        f"{env['device']}, {result['threads']} thread(s), load {env['load_average_1min']:.1f} on "
        f"{env['cpu_cores']} cores at the start; torch {env['torch']}, onnxruntime {env['onnxruntime']}; "
        f"medians of {result['repeat']} rotating rounds",
        "",
        "| component | eager ms | ONNX Runtime ms | AOTInductor ms | ORT / AOTI | rel. error ORT, AOTI |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in result["components"].items():
        errors = row["rel_error"]
        lines.append(
            f"| {name} | {row['eager_ms']:.1f} | {row['ort_ms']:.1f} | {row['aoti_ms']:.1f} "
            f"| {row['ort_over_aoti']:.2f} | {errors['ort']:.1e}, {errors['aoti']:.1e} |"
        )
    run = result["whole_run"]
    lines += [
        "",
        f"Whole {run['mode']} run ({run['steps']} steps): eager {run['eager_s']:.2f} s, ONNX Runtime "
        f"{run['ort_s']:.2f} s, AOTInductor {run['aoti_s']:.2f} s; ORT / AOTI {run['ort_s'] / run['aoti_s']:.2f}",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--res", default="tiny", help="preset (default tiny)")
    parser.add_argument("--height", type=int, default=None, help="graph height (default: the preset's)")
    parser.add_argument("--width", type=int, default=None, help="graph width (default: the preset's)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads for every runtime (default 1)")
    parser.add_argument("--repeat", type=int, default=15, help="timed rounds per component (default 15)")
    parser.add_argument("--root", type=Path, default=None, help="folder to build into / reuse (default: a temp)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="where the JSON goes")
    args = parser.parse_args(argv)
    preset = dcrt.get_preset(args.res)
    height, width = args.height or preset.height, args.width or preset.width
    limit_threads(args.threads)
    env = environment(torch.device("cpu"))  # before the builds: the load the measurements meet
    with tempfile.TemporaryDirectory() as scratch:
        root = args.root or Path(scratch)
        weights = Weights(preset.name)
        model = dcrt.random_model(preset, seed=0)
        export_dir = root / "export" / f"{preset.name}-{height}x{width}"
        export_model(model, export_dir, ExportRequest.for_weights(weights, preset, "fp32", height, width))
        config, target = AotiConfig(), detect_aoti_target("cpu", False)
        report = build_aoti_bundle(preset, weights, root / "engines", config, target, height, width, log=print)
        backends = {"ort": open_onnxruntime(export_dir), "aoti": open_aoti(report.directory)}
        rows = component_rows(model, backends, args.repeat)
        backends["eager"] = TorchBackend(model)
        result = {
            "preset": preset.name,
            "height": height,
            "width": width,
            "threads": args.threads,
            "repeat": args.repeat,
            "environment": env,
            "components": rows,
            "whole_run": whole_run(model, backends, height, width, max(3, args.repeat // 3)),
        }
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"cpu-backends-{preset.name}-{height}x{width}-t{args.threads}"
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"{name}.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
