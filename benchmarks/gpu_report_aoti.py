"""gpu_report's `aoti` section: one AOTInductor package built on the device, timed beside eager, and whether a CUDA
graph can capture it (measured, never assumed: dcrt.backends.aoti_backend keeps `capturable` False until this
says otherwise).

On a GPU it builds the full-size `unet` package (batch 2, fp16, CUDA) of `--aoti-preset`, then the rest of the
bundle while the budget allows (each component records its build time and size, or why it was not built). The
packages (GBs) go to gpu_report's work folder, never to its --out.
The dry run builds the tiny preset's `text_encoder` for the CPU (the smallest package: the section's wiring in
seconds, not a measurement). Then for the measured component: ms per call eager (the PyTorch module) and packaged,
side by side, and on CUDA a capture of the package's call into a CUDA graph, replayed and compared with a direct
call on the same inputs.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

import dcrt
from dcrt.artifacts.aoti_build import AotiConfig, build_aoti_bundle
from dcrt.artifacts.aoti_bundle import AotiManifest, detect_aoti_target
from dcrt.artifacts.export import PRECISIONS, graph_modules, relative_error
from dcrt.artifacts.graphs import io_table, sample_inputs
from dcrt.backends.aoti_backend import call_package, load_package
from dcrt.weights import Weights

MEASURED = {"cuda": "unet", "cpu": "text_encoder"}  # the component timed and captured, per device
CALLS = 10  # timed calls per side
REST_RESERVE_S = 120  # budget a further component's build must leave


def aoti_section(report, preset_name: str, device: torch.device, dry_run: bool, work: Path) -> None:
    """Build into `work`, time and (CUDA) capture; everything measured lands in report['sections']['aoti']."""
    preset = dcrt.get_preset(preset_name)
    kind = device.type
    config, target = AotiConfig(device=kind), detect_aoti_target(kind)
    root = work / "aoti-engines"
    name = MEASURED[kind]
    report.record("aoti", "settings", value={"preset": preset.name, "target": target.dirname, "component": name})
    build(report, preset, config, target, root, [name])
    rest = [c for c in io_table(preset) if c != name]
    if dry_run:
        report.record("aoti", "not_built", value={c: "dry run: one package only" for c in rest})
    else:
        for component in rest:
            left = report.left()
            if left < REST_RESERVE_S:
                report.record("aoti", "not_built", component, value=f"budget: {left:.0f} s left")
                continue
            build(report, preset, config, target, root, [component])
    directory = root / target.dirname / preset.name
    runner = load_package(directory / f"{name}.pt2", kind)
    inputs = tuple(x.to(device) for x in sample_inputs(io_table(preset)[name], preset, seed=1))
    model = dcrt.random_model(preset, seed=0, device=device, dtype=PRECISIONS[config.graph_precision])
    eager = graph_modules(model, model.dtype)[name].eval()
    timing(report, eager, runner, inputs, device)
    if kind == "cuda":
        report.record("aoti", "cuda_graph", value=capture_check(runner, inputs))
    else:
        report.record("aoti", "cuda_graph", value="not measured: no CUDA device (dry run)")


def build(report, preset, config: AotiConfig, target, root: Path, components: list[str]) -> None:
    report.section = f"aoti/build {', '.join(components)}"  # where a watchdog abort stood, with its seconds in it
    start = time.monotonic()
    result = build_aoti_bundle(
        preset, Weights(preset.name), root, config, target, log=report.log, only=tuple(components)
    )
    manifest = AotiManifest.read(result.directory)
    for c in components:
        entry = manifest.engines[c]
        report.record(
            "aoti",
            "built",
            c,
            value={"build_s": entry.build_seconds, "mib": round(entry.bytes / 2**20, 1), "parity": entry.parity},
        )
    report.log(f"built {', '.join(components)} in {time.monotonic() - start:.0f} s")
    report.section = "aoti"


def _ms_per_call(fn, device: torch.device) -> float:
    fn()  # warm-up
    _sync(device)
    start = time.perf_counter()
    for _ in range(CALLS):
        fn()
    _sync(device)
    return (time.perf_counter() - start) * 1000 / CALLS


def timing(report, eager, runner, inputs: tuple, device: torch.device) -> None:
    with torch.inference_mode():
        want, got = eager(*inputs), call_package(runner, inputs)
        eager_ms, aoti_ms = _ms_per_call(lambda: eager(*inputs), device), _ms_per_call(lambda: runner(*inputs), device)
    want = want if isinstance(want, tuple) else (want,)
    entry = {
        "eager_ms": round(eager_ms, 3),
        "aoti_ms": round(aoti_ms, 3),
        "eager_over_aoti": round(eager_ms / aoti_ms, 3),
        "rel_error_vs_eager": relative_error(got, want),
    }
    report.record("aoti", "timing", value=entry)
    report.log(f"eager {eager_ms:.2f} ms, aoti {aoti_ms:.2f} ms per call ({entry['eager_over_aoti']}x)")


def capture_check(runner, inputs: tuple) -> dict:
    """Capture one call in a CUDA graph (warmed up on a side stream first, as torch's docs ask), replay it on new
    input values and compare with a direct call on the same values."""
    static = tuple(x.clone() for x in inputs)
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.inference_mode():
            runner(*static)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph):
            captured = call_package(runner, static)
        for x in static:
            if x.is_floating_point():
                x.mul_(0.5)  # other values: a replay must compute them, not return the capture's
        graph.replay()
        torch.cuda.synchronize()
        with torch.inference_mode():
            direct = call_package(runner, static)
        error = relative_error(captured, direct)
        start = time.perf_counter()
        for _ in range(CALLS):
            graph.replay()
        torch.cuda.synchronize()
        replay_ms = (time.perf_counter() - start) * 1000 / CALLS
        return {"capturable": error < 1e-3, "replay_rel_error": error, "replay_ms": round(replay_ms, 3)}
    except Exception as exc:  # the answer is "no", with the reason
        return {"capturable": False, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def aoti_markdown(section: dict) -> list[str]:
    """The section's lines of gpu-report.md: builds, then the timing and capture of the measured component."""
    if "settings" not in section:
        return []
    s = section["settings"]
    lines = ["", f"## aoti ({s['preset']}, {s['target']})", ""]
    lines += ["| component | build s | MiB | parity |", "|---|---|---|---|"]
    for name, b in section.get("built", {}).items():
        lines.append(f"| {name} | {b['build_s']} | {b['mib']} | {b['parity']['rel_error']:.1e} |")
    lines += [f"| {name} | not built: {why} | | |" for name, why in section.get("not_built", {}).items()]
    timing = section.get("timing")
    if timing:
        lines += [
            "",
            f"{s['component']}: eager {timing['eager_ms']} ms, aoti {timing['aoti_ms']} ms per call "
            f"({timing['eager_over_aoti']}x); CUDA graph: {section.get('cuda_graph')}",
        ]
    return lines
