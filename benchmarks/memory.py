"""Peak device memory of one generation, estimated on any machine (no GPU needed): live tensor bytes.

    python benchmarks/memory.py [--presets tooncrafter] [--dtype fp16] [--steps N] [--out DIR]

The real pipeline runs (`Pipeline.sample` through the graph runner's step body, then `decoded_chunks`) on
fake tensors: shapes and dtypes without data. A dispatch mode records the storage of every tensor an op
creates and counts its bytes until it is freed; the weights count whole. Each preset runs twice, side by
side: with dcrt's norms, and with every norm computing on an fp32 copy of its input, as the original does
(`dcrt.models.layers._spell_out_fp32`).

What the count leaves out, so `torch.cuda.max_memory_allocated` on a GPU (benchmarks/gpu_report.py) reads
higher: library workspaces (cuDNN, cuBLAS), the caching allocator's rounding, and memory inside a kernel.
The CUDA context (about 0.5 GB) is outside the allocator in both. The estimate is for the torch backend.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import dcrt
from dcrt.families.dynamicrafter.options import resolve_options
from dcrt.families.dynamicrafter.pipeline import Pipeline
from dcrt.families.dynamicrafter.torch_backend import TorchBackend
from dcrt.models.dynamicrafter import DynamiCrafter

REPO = Path(__file__).resolve().parents[1]
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
GIB = 2**30  # as gpu_report's peak_memory_gib


class LiveTensors(TorchDispatchMode):
    """Bytes of every storage an op creates, counted until the storage is freed; the peak per stage."""

    def __init__(self):
        super().__init__()
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.bytes = 0
        self.peak = 0

    def _forget_freed(self) -> None:
        for key in [key for key, (ref, _) in self.live.items() if ref.expired()]:
            self.bytes -= self.live.pop(key)[1]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self._forget_freed()  # what the previous op's caller dropped is gone before this op allocates
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                ref = StorageWeakRef(t.untyped_storage())
                if ref.cdata not in self.live:
                    self.live[ref.cdata] = (ref, t.untyped_storage().nbytes())
                    self.bytes += self.live[ref.cdata][1]
        self.peak = max(self.peak, self.bytes)
        return out

    @contextmanager
    def stage(self) -> Iterator[dict]:
        """Measures the peak inside the block (tensors held from before included); fills the dict on exit."""
        self._forget_freed()
        self.peak = held = self.bytes
        result: dict = {}
        yield result
        self._forget_freed()
        result.update(held=held, peak=self.peak, after=self.bytes)


@dataclass
class Estimate:
    preset: str
    norms: str  # "dcrt" or "fp32 copies" (the original's)
    dtype: str
    height: int
    width: int
    frames: int
    steps: int
    weights_gib: float
    sampling_gib: float  # conditioning and the denoising loop, over the weights
    decode_gib: float  # the decode, latents and references held, over the weights
    peak_gib: float  # weights + the larger of the two


def fake_model(network: type, preset, dtype: torch.dtype, fake: FakeTensorMode, device: str | torch.device = "cpu"):
    """`network(preset)` (DynamiCrafter, StableVideoDiffusion) as fake tensors in `dtype` on `device` (its schedule
    buffers as the model builds them)."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # built in the dtype: converting fake parameters afterwards is unsupported
    try:
        with fake, torch.device(device):
            return network(dcrt.get_preset(preset)).eval().requires_grad_(False)
    finally:
        torch.set_default_dtype(default)


def frames_shape_only(video: torch.Tensor) -> np.ndarray:
    """`to_uint8_frames` for fake tensors: the device-side conversion runs, the host copy is an empty array."""
    x = ((video.float().clamp(-1.0, 1.0) + 1.0) / 2.0 * 255.0).to(torch.uint8).permute(0, 2, 3, 1)
    return np.zeros(tuple(x.shape), np.uint8)


def estimate(preset_name: str, dtype: str, steps: int | None, fp32_norm_copies: bool) -> Estimate:
    fake = FakeTensorMode(allow_non_fake_inputs=True)
    model = fake_model(DynamiCrafter, preset_name, DTYPES[dtype], fake)
    weights = sum(t.untyped_storage().nbytes() for t in [*model.parameters(), *model.buffers()])
    preset = model.preset
    mode = preset.modes[0]
    opts = resolve_options(preset, mode, **({"steps": steps} if steps else {}))
    images = [np.zeros((opts.height, opts.width, 3), np.uint8)] * (1 if mode == "animate" else 2)
    patches = [
        mock.patch(f"dcrt.families.dynamicrafter.{m}.to_uint8_frames", frames_shape_only)
        for m in ("pipeline", "clip_decode")
    ]
    if fp32_norm_copies:
        patches.append(mock.patch("dcrt.models.layers._spell_out_fp32", lambda x, weight: True))
    with fake, torch.inference_mode(), LiveTensors() as live:
        for patch in patches:
            patch.start()
        try:
            pipeline = Pipeline(TorchBackend(model), cuda_graph=True, fused_kernels=False)
            with live.stage() as sampling:
                latents, references = pipeline.sample(images, "a prompt", mode, opts)
            with live.stage() as decoding:
                for _ in pipeline.decoded_chunks(latents, mode, references):
                    pass
        finally:
            for patch in patches:
                patch.stop()
    return Estimate(
        preset=preset_name,
        norms="fp32 copies" if fp32_norm_copies else "dcrt",
        dtype=dtype,
        height=opts.height,
        width=opts.width,
        frames=opts.frames,
        steps=opts.steps,
        weights_gib=round(weights / GIB, 3),
        sampling_gib=round(sampling["peak"] / GIB, 3),
        decode_gib=round(decoding["peak"] / GIB, 3),
        peak_gib=round((weights + max(sampling["peak"], decoding["peak"])) / GIB, 3),
    )


def table(rows: list[Estimate]) -> str:
    lines = [
        "| preset | norms | dtype | size | weights GiB | sampling GiB | decode GiB | peak GiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.preset} | {r.norms} | {r.dtype} | {r.height}x{r.width}x{r.frames} | {r.weights_gib} | "
            f"{r.sampling_gib} | {r.decode_gib} | {r.peak_gib} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[Estimate]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", default="tooncrafter", help="comma-separated DynamiCrafter-family presets")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp16")
    parser.add_argument("--steps", type=int, default=None, help="default: the preset's (memory does not depend on it)")
    parser.add_argument("--out", type=Path, default=None, help="write memory-<presets>-<dtype>.json and .md here")
    args = parser.parse_args(argv)
    rows = [
        estimate(name, args.dtype, args.steps, fp32_copies)
        for name in args.presets.split(",")
        for fp32_copies in (False, True)
    ]
    text = table(rows)
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        stem = args.out / f"memory-{args.presets.replace(',', '-')}-{args.dtype}"
        command = "python benchmarks/memory.py " + " ".join(sys.argv[1:] if argv is None else argv)
        environment = {"device": "none (fake tensors)", "torch": torch.__version__}
        payload = {"command": command, "environment": environment, "estimates": [asdict(r) for r in rows]}
        stem.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
        stem.with_suffix(".md").write_text(f"`{command}` (live tensor bytes, no device)\n\n{text}\n")
    return rows


if __name__ == "__main__":
    main()
