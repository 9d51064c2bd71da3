"""Peak device memory of one generation per memory profile, estimated on any machine (no GPU needed).

    python benchmarks/memory.py [--presets 1024,tooncrafter] [--dtypes fp16,bf16] [--profiles fast,low]
                                [--weights fp8] [--original-norms] [--out DIR] [--write-estimates]

The real pipeline runs (the family's `stream`: conditioning, the denoising loop through the graph runner or the
eager loop as the profile makes it, then every decoder call) on a simulated CUDA device
(benchmarks/simulated_cuda.py: fake tensors, no data). The model is built in host memory and handed to the torch
backend with the profile (dcrt.memory), which places it: resident networks are copied to `cuda:0`, offloaded ones
are copied in for each call. A dispatch mode counts the bytes of every storage on the device from the moment an
op creates it until it is freed: the estimate is the largest such sum.

Beside the bytes, what each profile costs in time, modelled: UNet calls (the guidance branches one at a time
double them), transformer-block pieces, and the bytes copied host -> device, timed at `--bandwidth` GB/s (a
PCIe 4.0 x16 link's practical rate from pinned memory; the copies are asynchronous but the network waits for
its weights). `benchmarks/gpu_report.py` measures the real peak and ms per step on a GPU.

What the count leaves out, so `torch.cuda.max_memory_allocated` on a GPU reads higher: library workspaces
(cuDNN, cuBLAS), the caching allocator's rounding, memory inside a kernel, and a captured CUDA graph's private
pool (its activations stay reserved between replays). The CUDA context (about 0.5 GB) is outside the allocator in
both. `--write-estimates` stores the numbers `--memory auto` reads (dcrt/memory_estimates.json).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

sys.path.insert(0, str(Path(__file__).resolve().parent))
from simulated_cuda import DEVICE, fake_model, simulated_cuda  # noqa: E402

import dcrt  # noqa: E402
from dcrt.families import family_of  # noqa: E402
from dcrt.memory import ESTIMATES_FILE, PROFILES, MemoryProfile  # noqa: E402
from dcrt.models.fp8 import store_weights_fp8  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
GIB = 2**30  # as gpu_report's peak_memory_gib
PCIE_GBPS = 25.0  # PCIe 4.0 x16 from pinned memory, in practice (32 GB/s raw)
ALL_PRESETS = "256,512,1024,512-interp,tooncrafter,svd-xt"


class LiveTensors(TorchDispatchMode):
    """Bytes of every storage an op creates on `device_type` (None: anywhere), counted until the storage is freed;
    the peak per stage; and the bytes copied onto the device from elsewhere."""

    def __init__(self, device_type: str | None = None):
        super().__init__()
        self.device_type = device_type
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.bytes = 0
        self.peak = 0
        self.copied_in = 0

    def _forget_freed(self) -> None:
        for key in [key for key, (ref, _) in self.live.items() if ref.expired()]:
            self.bytes -= self.live.pop(key)[1]

    def _counts(self, t: torch.Tensor) -> bool:
        return self.device_type is None or t.device.type == self.device_type

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self._forget_freed()  # what the previous op's caller dropped is gone before this op allocates
        out = func(*args, **(kwargs or {}))
        sources = [a for a in tree_leaves(args) if isinstance(a, torch.Tensor)]
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and self._counts(t):
                ref = StorageWeakRef(t.untyped_storage())
                if ref.cdata not in self.live:
                    self.live[ref.cdata] = (ref, t.untyped_storage().nbytes())
                    self.bytes += self.live[ref.cdata][1]
                    if sources and not self._counts(sources[0]):  # a copy onto the device
                        self.copied_in += self.live[ref.cdata][1]
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
    profile: str
    weights: str  # the stored weights' dtype: the model's, or fp8
    norms: str  # "dcrt" or "fp32 copies" (the original's)
    dtype: str
    height: int
    width: int
    frames: int
    steps: int
    resident_gib: float  # on the device before the run: the networks the profile keeps there
    sampling_gib: float  # peak during conditioning and the denoising loop
    decode_gib: float  # peak during the decode
    peak_gib: float  # the larger of the two
    unet_calls_per_step: float  # network calls per sampler step (2 when the guidance branches run one at a time)
    block_pieces: int  # transformer-block calls per network call (token pieces; one per block when whole)
    host_to_device_gib: float  # bytes copied onto the device per video once placed (offloaded weights, inputs)
    transfer_s: float  # host_to_device at the stated bandwidth


def network_of(preset_name: str) -> type:
    from dcrt.models.dynamicrafter import DynamiCrafter
    from dcrt.models.svd import StableVideoDiffusion

    return {"dynamicrafter": DynamiCrafter, "svd": StableVideoDiffusion}[family_of(dcrt.get_preset(preset_name)).name]


class CallCounter:
    """Counts the backend's UNet calls (what the sampler asks for: one per step, or per window group), the network
    calls they make (more when the guidance branches run one at a time), and the transformer blocks' pieces (each
    piece calls the block's `attn1` once). Ratios, since a captured step calls the network only when captured."""

    def __init__(self, backend):
        self.backend_calls = self.unet_calls = self.pieces = 0
        unet, call = backend.model.unet, backend.unet

        def counted(*args):
            self._count("backend_calls")
            return call(*args)

        backend.unet = counted
        unet.register_forward_hook(lambda *_: self._count("unet_calls"))
        for module in unet.modules():
            if hasattr(module, "token_chunk"):
                module.attn1.register_forward_hook(lambda *_: self._count("pieces"))

    def _count(self, what: str) -> None:
        setattr(self, what, getattr(self, what) + 1)


@contextlib.contextmanager
def placed_backend(
    preset_name: str, dtype: str, profile: MemoryProfile, weights: str | None = None, fp32_norm_copies: bool = False
):
    """The preset's model (fake tensors), stored as `weights` says, in a torch backend that `profile` placed on the
    simulated device: (backend, the device's LiveTensors), for as long as the block runs."""
    preset = dcrt.get_preset(preset_name)
    with simulated_cuda() as cuda, LiveTensors("cuda") as live, contextlib.ExitStack() as patches:
        if fp32_norm_copies:
            patches.enter_context(mock.patch("dcrt.models.layers._spell_out_fp32", lambda x, weight: True))
        model = fake_model(network_of(preset_name), preset_name, DTYPES[dtype], cuda.fake, "cpu")
        if weights == "fp8":
            store_weights_fp8(model)
        yield family_of(preset).part("torch_backend")(model, profile, DEVICE), live


def resident_bytes(preset_name: str, dtype: str, profile: MemoryProfile, weights: str | None = None) -> int:
    """What stays on the device between runs: the networks `profile` keeps there (`Estimate.resident_gib`, without
    running a video)."""
    with placed_backend(preset_name, dtype, profile, weights) as (_, live):
        return live.bytes


def estimate(
    preset_name: str,
    dtype: str,
    profile: MemoryProfile,
    steps: int | None = None,
    weights: str | None = None,
    fp32_norm_copies: bool = False,
) -> Estimate:
    """One video of the preset's first mode at its size, `profile` placing the model, on the simulated device.
    `weights` "fp8": stored as dcrt.models.fp8 stores them."""
    preset = dcrt.get_preset(preset_name)
    family = family_of(preset)
    mode = preset.modes[0]
    images = [np.zeros((preset.height, preset.width, 3), np.uint8)] * (1 if mode == "animate" else 2)
    with placed_backend(preset_name, dtype, profile, weights, fp32_norm_copies) as (backend, live):
        counter = CallCounter(backend)
        resident, placed = live.bytes, live.copied_in
        with live.stage() as sampling:
            chunks, _ = family.part("stream")(
                backend, mode, images, "a prompt", None, {"steps": steps} if steps else {}
            )
        with live.stage() as decoding:
            for _ in chunks:
                pass
    return Estimate(
        preset=preset_name,
        profile=profile.name,
        weights=weights or dtype,
        norms="fp32 copies" if fp32_norm_copies else "dcrt",
        dtype=dtype,
        height=preset.height,
        width=preset.width,
        frames=preset.frames,
        steps=steps or preset.sampling.steps,
        resident_gib=round(resident / GIB, 3),
        sampling_gib=round(sampling["peak"] / GIB, 3),
        decode_gib=round(decoding["peak"] / GIB, 3),
        peak_gib=round(max(sampling["peak"], decoding["peak"]) / GIB, 3),
        unet_calls_per_step=round(counter.unet_calls / max(1, counter.backend_calls), 2),
        block_pieces=round(counter.pieces / max(1, counter.unet_calls)),
        host_to_device_gib=round((live.copied_in - placed) / GIB, 3),
        transfer_s=round((live.copied_in - placed) / (PCIE_GBPS * 1e9), 3),
    )


def table(rows: list[Estimate]) -> str:
    lines = [
        "| preset | profile | weights | norms | size | resident GiB | sampling GiB | decode GiB | **peak GiB** | "
        "UNet calls per step | block pieces per call | host->device GiB per video | copy s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.preset} | {r.profile} | {r.weights} | {r.norms} | {r.height}x{r.width}x{r.frames} | "
            f"{r.resident_gib} | {r.sampling_gib} | {r.decode_gib} | **{r.peak_gib}** | {r.unet_calls_per_step} | "
            f"{r.block_pieces} | {r.host_to_device_gib} | {r.transfer_s} |"
        )
    return "\n".join(lines)


def write_estimates(rows: list[Estimate], path: Path) -> None:
    """Adds the rows (dcrt-norm, model-dtype weights) to the file `--memory auto` reads, keyed preset -> dtype ->
    profile; the rows of other presets and dtypes already there stay."""
    with open(path.with_suffix(".lock"), "w") as lock:  # runs side by side add their presets one at a time
        fcntl.flock(lock, fcntl.LOCK_EX)
        _add_estimates(rows, path)
    path.with_suffix(".lock").unlink(missing_ok=True)


def _add_estimates(rows: list[Estimate], path: Path) -> None:
    payload = json.loads(path.read_text()) if path.is_file() else {"estimates": {}}
    payload["command"] = "python benchmarks/memory.py --dtypes fp16,bf16 --steps 2 --write-estimates (adds its presets)"
    payload["estimates_are"] = "live tensor bytes on a simulated device (benchmarks/memory.py), not measurements"
    for r in rows:
        if r.norms != "dcrt" or r.weights != r.dtype:
            continue
        resident, peak = round(r.resident_gib * GIB), round(r.peak_gib * GIB)
        entry = {
            "resident_bytes": resident,
            "activation_bytes": peak - resident,
            "pixels": r.height * r.width * r.frames,
        }
        payload["estimates"].setdefault(r.preset, {}).setdefault(r.dtype, {})[r.profile] = entry
    path.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> list[Estimate]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", default=ALL_PRESETS, help="comma-separated presets (default: %(default)s)")
    parser.add_argument("--dtypes", default="fp16", help="comma-separated: fp16, bf16, fp32")
    parser.add_argument("--profiles", default=",".join(PROFILES), help="comma-separated memory profiles")
    parser.add_argument("--weights", choices=["fp8"], default=None, help="also estimate with fp8 weight storage")
    parser.add_argument("--original-norms", action="store_true", help="also with the original's fp32 norm copies")
    parser.add_argument("--steps", type=int, default=None, help="default: the preset's (memory does not depend on it)")
    parser.add_argument("--out", type=Path, default=None, help="write memory-<presets>-<dtypes>.json and .md here")
    parser.add_argument("--write-estimates", action="store_true", help=f"add the results to dcrt/{ESTIMATES_FILE}")
    args = parser.parse_args(argv)
    rows = []
    for name in args.presets.split(","):
        for dtype in args.dtypes.split(","):
            for profile in args.profiles.split(","):
                variants = [(None, False)] + [(args.weights, False)] * bool(args.weights)
                variants += [(None, True)] * args.original_norms
                for weights, fp32_copies in variants:
                    rows.append(estimate(name, dtype, PROFILES[profile], args.steps, weights, fp32_copies))
                    print(table(rows[-1:]).splitlines()[-1], flush=True)
    text = table(rows)
    print(text)
    command = "python benchmarks/memory.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        stem = args.out / f"memory-{args.presets.replace(',', '-')}-{args.dtypes.replace(',', '-')}"
        environment = {"device": "simulated cuda:0 (fake tensors): estimates", "torch": torch.__version__}
        payload = {"command": command, "environment": environment, "estimates": [asdict(r) for r in rows]}
        stem.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
        stem.with_suffix(".md").write_text(
            f"`{command}` (estimates: live tensor bytes on a simulated device)\n\n{text}\n"
        )
    if args.write_estimates:
        write_estimates(rows, REPO / "dcrt" / ESTIMATES_FILE)
    return rows


if __name__ == "__main__":
    main()
