"""AOTInductor packages on the CPU: build time and size per component, and speed against eager PyTorch.

    python benchmarks/aoti.py --res tiny [--root DIR] [--native] [--repeat 5] [--out benchmarks/results]

Builds the preset's packages (seeded random weights, `dcrt build --engine aoti`'s code) into a fresh root (or
reuses an up-to-date bundle under --root; its build times then come from the manifest), then times every
component eagerly (the PyTorch module, fp32, inference mode) and as its package, alternating the two `--repeat`
times on the same inputs, and one whole sampling run (animate, or interpolate for interpolation presets) on
each backend. Ratios are eager time / package time, measured side by side in this one run: above 1, the
package is faster. Prints a Markdown table; writes JSON (aoti-<res>-cpu.json) with the conditions.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import dcrt  # noqa: E402
from dcrt.artifacts.aoti_build import AotiConfig, build_aoti_bundle  # noqa: E402
from dcrt.artifacts.aoti_bundle import AotiManifest, detect_aoti_target  # noqa: E402
from dcrt.artifacts.export import graph_modules, relative_error  # noqa: E402
from dcrt.artifacts.graphs import sample_inputs  # noqa: E402
from dcrt.backends.aoti_backend import open_aoti  # noqa: E402
from dcrt.bench import environment  # noqa: E402
from dcrt.families.dynamicrafter.static import StaticShapeBackend  # noqa: E402
from dcrt.families.dynamicrafter.torch_backend import TorchBackend  # noqa: E402
from dcrt.weights import Weights  # noqa: E402

SAMPLING_STEPS = 5


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def component_speeds(model, backend: StaticShapeBackend, repeat: int) -> dict[str, dict]:
    """Per component: median seconds eager and packaged, alternating, after one warm-up call of each."""
    eager = graph_modules(model, torch.float32)
    rows = {}
    for name, spec in backend.specs.items():
        inputs = sample_inputs(spec, model.preset, seed=1)
        with torch.inference_mode():
            want, got = eager[name](*inputs), backend._run_all(name, *inputs)  # warm-up, and the check
            pairs = [
                (timed(lambda: eager[name](*inputs), 1)[0], timed(lambda: backend._run_all(name, *inputs), 1)[0])
                for _ in range(repeat)
            ]
        e, a = statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)
        error = relative_error(got if len(got) > 1 else got[0], want)
        rows[name] = {"eager_ms": e * 1e3, "aoti_ms": a * 1e3, "ratio": e / a, "rel_error": error}
    return rows


def sampling_speed(model, backend: StaticShapeBackend, repeat: int) -> dict:
    """One whole run per backend, alternating, median seconds (conditioning + SAMPLING_STEPS steps + decode)."""
    preset = model.preset
    image = (np.random.default_rng(0).random((preset.height, preset.width, 3)) * 255).astype(np.uint8)
    mode = preset.modes[0]

    def run(b):
        if mode == "interpolate":
            return dcrt.interpolate(b, image, image, "a boat", steps=SAMPLING_STEPS, seed=1)
        return dcrt.animate(b, image, "a boat", steps=SAMPLING_STEPS, seed=1)

    eager = TorchBackend(model)
    run(eager), run(backend)  # warm-up
    pairs = [(timed(lambda: run(eager), 1)[0], timed(lambda: run(backend), 1)[0]) for _ in range(repeat)]
    e, a = statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)
    return {"mode": mode, "steps": SAMPLING_STEPS, "eager_s": e, "aoti_s": a, "ratio": e / a}


def markdown(result: dict) -> str:
    lines = [
        f"# AOTInductor on the CPU: {result['preset']} ({result['environment']['device']}, "
        f"{result['environment']['threads']} threads, load {result['environment']['load_average_1min']:.1f})",
        "",
        f"isa {result['isa']}, torch {result['environment']['torch']}; whole build {result['build_s']:.0f} s",
        "",
        "| component | build s | package MiB | eager ms | aoti ms | eager / aoti | rel. error |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in result["components"].items():
        lines.append(
            f"| {name} | {row['build_s']:.0f} | {row['mib']:.1f} | {row['eager_ms']:.1f} | {row['aoti_ms']:.1f} "
            f"| {row['ratio']:.2f}x | {row['rel_error']:.1e} |"
        )
    s = result["sampling"]
    lines += [
        "",
        f"Whole {s['mode']} run ({s['steps']} steps): eager {s['eager_s']:.2f} s, aoti {s['aoti_s']:.2f} s, "
        f"eager / aoti {s['ratio']:.2f}x",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--res", default="tiny", help="preset (default tiny)")
    parser.add_argument("--root", type=Path, default=None, help="bundle root to build into / reuse (default: a temp)")
    parser.add_argument("--native", action="store_true", help="packages for this CPU instead of portable AVX2")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per component and backend")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="where the JSON goes")
    args = parser.parse_args(argv)
    preset = dcrt.get_preset(args.res)
    env = environment(torch.device("cpu"))  # before the build: the load the measurements meet
    with tempfile.TemporaryDirectory() as scratch:
        root = args.root or Path(scratch)
        config, target = AotiConfig(native=args.native), detect_aoti_target("cpu", args.native)
        start = time.perf_counter()
        report = build_aoti_bundle(preset, Weights(preset.name), root, config, target, log=print)
        build_s = time.perf_counter() - start
        manifest = AotiManifest.read(report.directory)
        model = dcrt.random_model(preset, seed=0)
        backend = open_aoti(report.directory)
        rows = component_speeds(model, backend, args.repeat)
        for name, row in rows.items():
            entry = manifest.engines[name]
            row |= {"build_s": entry.build_seconds, "mib": entry.bytes / 2**20, "rebuilt": name in report.built}
        result = {
            "preset": preset.name,
            "isa": target.isa,
            "environment": env,
            "build_s": build_s if report.built else sum(e.build_seconds for e in manifest.engines.values()),
            "components": rows,
            "sampling": sampling_speed(model, backend, max(1, args.repeat // 2)),
        }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"aoti-{preset.name}-cpu.json").write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
