"""Fingerprints of dcrt's behaviour: sha256 of the final latents and the uint8 frames of every mode of every
family's tiny preset (seeded random weights, fixed seeds), on PyTorch and on ONNX Runtime (a fresh export), on the
CPU, plus the files `dcrt animate` writes from the command line. Run it before and after a change that should not
change behaviour, then compare the two JSON files:

    python benchmarks/behaviour_hashes.py --out before.json
    ... the change ...
    python benchmarks/behaviour_hashes.py --out after.json --compare before.json

Equal hashes mean bit-identical outputs on this machine, thread count and torch version (1 thread by default:
results that do not depend on how the work is split).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# (preset, mode, number of images, prompt or None)
CASES = (
    ("tiny", "animate", 1, "a boat"),
    ("tiny", "animate+extend", 1, "a boat"),
    ("tiny-256", "animate", 1, "a boat"),
    ("tiny", "interpolate", 2, "a man smiling"),
    ("tiny", "loop", 1, "waves"),
    ("tiny", "keyframes", 3, "waving"),
    ("tiny-tooncrafter", "interpolate", 2, "a cat turning"),
    ("tiny-tooncrafter", "loop", 1, "a cat"),
    ("tiny-svd", "animate", 1, None),
)
STEPS, SEED = 4, 123


def _digest(array) -> str:
    array = np.ascontiguousarray(array)
    return hashlib.sha256(str(array.dtype).encode() + str(array.shape).encode() + array.tobytes()).hexdigest()[:16]


def _images(preset, count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, (preset.height, preset.width, 3), dtype=np.uint8) for _ in range(count)]


def _run(dcrt, backend, mode: str, images: list, prompt: str | None):
    options = {"steps": STEPS, "seed": SEED}
    if mode == "animate":
        return dcrt.animate(backend, images[0], prompt, **options)
    if mode == "animate+extend":
        return dcrt.animate(backend, images[0], prompt, extend=1, **options)
    if mode == "interpolate":
        return dcrt.interpolate(backend, images[0], images[1], prompt, **options)
    if mode == "loop":
        return dcrt.loop(backend, images[0], prompt, **options)
    return dcrt.interpolate_keyframes(backend, images, prompt, **options)


def api_hashes(runtime: str, work: Path) -> dict:
    import dcrt
    from dcrt.loading import BackendRequest, ensure_export

    found = {}
    for preset_name, mode, count, prompt in CASES:
        preset = dcrt.get_preset(preset_name)
        if runtime == "torch":
            backend = dcrt.open_backend(preset_name, backend="torch", random_weights=True, log=lambda m: None)
        else:
            out = work / f"export-{preset_name}"
            ensure_export(preset, BackendRequest(preset_name, random_weights=True).required_weights(), out)
            backend = dcrt.open_backend(
                preset_name, backend="ort", export_dir=out, random_weights=True, log=lambda m: None
            )
        video = _run(dcrt, backend, mode, _images(preset, count), prompt)
        found[f"{runtime}/{preset_name}/{mode}"] = {
            "latents": _digest(video.latents.float().numpy()),
            "frames": _digest(video.frames if isinstance(video.frames, np.ndarray) else video.frames.numpy()),
        }
        print(f"{runtime:6} {preset_name:17} {mode:15} {found[f'{runtime}/{preset_name}/{mode}']}", flush=True)
    return found


def cli_hashes(work: Path) -> dict:
    """The files `dcrt animate` writes (a gif: its encoder is deterministic)."""
    from PIL import Image

    found = {}
    for preset_name, prompt in (("tiny", "a boat"), ("tiny-svd", None)):
        image = work / "in.png"
        Image.fromarray(np.random.default_rng(7).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(image)
        out = work / f"cli-{preset_name}.gif"
        command = [sys.executable, "-m", "dcrt", "animate", str(image), *([prompt] if prompt else [])]
        command += ["--res", preset_name, "--random-weights", "--backend", "torch", "--steps", str(STEPS)]
        command += ["--seed", str(SEED), "--out", str(out)]
        subprocess.run(command, check=True, capture_output=True, cwd=work)
        found[f"cli/{preset_name}/animate.gif"] = hashlib.sha256(out.read_bytes()).hexdigest()[:16]
        print(f"cli    {preset_name:17} animate.gif     {found[f'cli/{preset_name}/animate.gif']}", flush=True)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="where the JSON of hashes goes")
    parser.add_argument(
        "--compare", type=Path, help="an earlier run's JSON: list the differences, exit 1 on any difference"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runtimes", default="torch,ort,cli")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    start = time.monotonic()
    found = {}
    with tempfile.TemporaryDirectory() as folder:
        for runtime in args.runtimes.split(","):
            found |= cli_hashes(Path(folder)) if runtime == "cli" else api_hashes(runtime, Path(folder))
    report = {"torch": torch.__version__, "threads": args.threads, "hashes": found}
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"{len(found)} fingerprints in {time.monotonic() - start:.0f} s -> {args.out}")
    if args.compare is None:
        return 0
    before = json.loads(args.compare.read_text())["hashes"]
    shared = sorted(before.keys() & found.keys())  # a run of fewer runtimes compares what it made
    differ = [key for key in shared if before[key] != found[key]]
    for key in differ:
        print(f"DIFFERS {key}: {before[key]} -> {found[key]}")
    print(f"{len(shared) - len(differ)} of {len(shared)} identical ({len(before.keys() - found.keys())} not run here)")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
