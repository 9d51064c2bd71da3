"""One command for a GPU machine: the GPU tests, the kernel checks, and eager vs CUDA-graph timings.

    python benchmarks/gpu_check.py [--presets 256,512] [--steps 10] [--out benchmarks/results]

Writes benchmarks/results/gpu-check-<device>.json with the device, driver, versions, test outcome
and, per preset, ms per denoising step for the eager loop and the captured graph (fp16 weights,
random full-size weights, same inputs; median of `--repeat` runs after a warm-up run).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import dcrt  # noqa: E402
from dcrt.backends import TorchBackend  # noqa: E402
from dcrt.bench import environment  # noqa: E402
from dcrt.pipeline import Pipeline, resolve_options  # noqa: E402


def run_tests() -> dict:
    """The GPU-marked tests (kernels against their references, the captured runner, TensorRT if present)."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu or trt", str(REPO / "tests")]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-500:]
    return {"command": " ".join(cmd[1:]), "exit_code": proc.returncode, "summary": tail}


def time_steps(pipe: Pipeline, image: np.ndarray, steps: int, repeat: int) -> float:
    """Median ms per step of the denoising loop alone (conditioning and decoding excluded)."""
    opts = resolve_options(pipe.preset, steps=steps)
    pixels = torch.from_numpy(image).permute(2, 0, 1)[None].float().div(127.5).sub(1).to(pipe.backend.device)
    guidance = dcrt.pipeline.guidance_for(opts)
    inputs = pipe.conditioning(pixels, "a boat", "animate", guidance, opts.fs)
    shape = (1, 4, pipe.preset.frames, opts.height // 8, opts.width // 8)
    times = []
    for k in range(repeat + 1):
        noise = dcrt.sampler.NoiseSource(k, pipe.backend.device)
        x_T = noise.draw(shape)
        torch.cuda.synchronize()
        start = time.perf_counter()
        if pipe.cuda_graph:
            pipe.runner(opts, guidance, inputs, x_T).run(inputs, x_T, noise)
        else:
            dcrt.sampler.sample(pipe.backend.unet, inputs, pipe.schedule(opts), guidance, x_T, noise)
        torch.cuda.synchronize()
        if k:  # the first run warms up (and captures the graph)
            times.append((time.perf_counter() - start) * 1000 / steps)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="256,512")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA GPU visible (see `dcrt info`)")
    device = torch.device("cuda")
    report = {"environment": environment(device), "tests": run_tests(), "presets": {}}
    print(f"tests: {report['tests']['summary']}")
    from dcrt.kernels import compile_cubin

    major, minor = torch.cuda.get_device_capability()
    start = time.perf_counter()
    compile_cubin(f"sm_{major}{minor}")
    report["nvrtc_compile_s"] = time.perf_counter() - start
    for name in args.presets.split(","):
        model = dcrt.random_model(name, device="cuda", dtype=torch.float16)
        preset = model.preset
        image = (np.random.default_rng(0).random((preset.height, preset.width, 3)) * 255).astype(np.uint8)
        eager = time_steps(Pipeline(TorchBackend(model), cuda_graph=False), image, args.steps, args.repeat)
        graph = time_steps(Pipeline(TorchBackend(model), cuda_graph=True), image, args.steps, args.repeat)
        report["presets"][name] = {
            "eager_ms_per_step": eager,
            "graph_ms_per_step": graph,
            "speedup": eager / graph,
            "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
        }
        print(f"{name}: eager {eager:.1f} ms/step, graph {graph:.1f} ms/step ({eager / graph:.2f}x)")
        del model
        torch.cuda.empty_cache()
    slug = "".join(c if c.isalnum() else "-" for c in report["environment"]["device"].lower()).strip("-")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"gpu-check-{slug}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(path)


if __name__ == "__main__":
    main()
