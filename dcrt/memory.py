"""Memory profiles: how much of a generation sits on the device at once, traded against speed (`--memory`).

    backend = dcrt.open_backend("1024", backend="torch", device="cuda", memory="low")

Each profile is a set of switches; none changes what is computed, only when and where (docs/memory.md):

- `token_chunk`: every transformer block (its attentions and feed-forward) runs over pieces of its batch of at
  most this many tokens (whole sequences: a sequence is never split), written into one output. The largest
  activation of the UNet at 1024 is one feed-forward's [tokens, 8 x channels] projection; pieces bound it.
- `unet_batch`: samples per UNet call. 1 runs the guidance branches one after the other instead of batched.
- `offload`: the encoders and the VAE live in host memory (pinned, on CUDA) and each is copied to the device
  only while it runs (dcrt.models.placement): the text and image encoders during the conditioning, the VAE for
  its encode and decode calls. `offload_unet`: the UNet too, on the device for the denoising loop only (so the
  loop runs without a CUDA graph: a graph captured on one copy of the weights cannot run on the next).
- `decode_chunk`: frames per VAE decoder call for the image decoder (DynamiCrafter, 512-interp). Temporal
  decoders take their frames together (ToonCrafter's clip; SVD's `--decode-chunk`, which changes the picture).
- `frame_pieces`: frames per pass of a temporal decoder's per-frame layers (its spatial ResnetBlocks and
  upsamples), written into one clip tensor: their temporaries are a piece's, not the clip's.

`fast` is the fastest: only feed-forward-sized pieces large enough to cost nothing on a GPU. `auto` picks the
fastest profile whose estimated peak (benchmarks/memory.py, kept in `dcrt/memory_estimates.json`) fits the
device's free memory. The profiles are plain data: this table is their one home.

Torch-free, so that the command line checks the name before loading anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from dcrt.errors import UsageError


@dataclass(frozen=True)
class MemoryProfile:
    name: str
    token_chunk: int | None  # tokens per transformer-block piece (None: the whole batch at once)
    unet_batch: int | None  # samples per UNet call (None: every guidance branch in one call)
    offload: bool  # every network but the UNet in host memory, on the device only while it runs
    offload_unet: bool  # the UNet as well
    decode_chunk: int  # frames per image-decoder call
    frame_pieces: int | None  # frames per pass of a temporal decoder's per-frame layers (None: the clip at once)
    summary: str  # what it does, in words, for `--help` and the log line

    def offloaded_networks(self, networks: tuple[str, ...]) -> tuple[str, ...]:
        """Which of a model's `networks` live in host memory under this profile."""
        return tuple(n for n in networks if (self.offload_unet if n == "unet" else self.offload))


FAST = MemoryProfile(
    "fast", token_chunk=2**16, unet_batch=None, offload=False, offload_unet=False, decode_chunk=4, frame_pieces=None,
    summary="everything on the device, guidance branches batched",
)  # fmt: skip
BALANCED = MemoryProfile(
    "balanced", token_chunk=2**16, unet_batch=None, offload=True, offload_unet=False, decode_chunk=1, frame_pieces=1,
    summary="encoders and VAE on the device only while they run, the decoder one frame at a time",
)  # fmt: skip
LOW = MemoryProfile(
    "low", token_chunk=2**14, unet_batch=1, offload=True, offload_unet=True, decode_chunk=1, frame_pieces=1,
    summary="as balanced, the UNet too, and the guidance branches one after the other",
)  # fmt: skip
PROFILES = {p.name: p for p in (FAST, BALANCED, LOW)}  # fastest first: `auto` takes the first that fits
AUTO = "auto"
MEMORY_CHOICES = (*PROFILES, AUTO)


def check_memory_name(name: str) -> None:
    if name not in MEMORY_CHOICES:
        raise UsageError(f"unknown memory profile {name!r}; choose {', '.join(MEMORY_CHOICES)}")


def memory_profile(name: str) -> MemoryProfile:
    """The profile named `name` (not `auto`: `choose_profile` resolves that, knowing the device)."""
    check_memory_name(name)
    if name == AUTO:
        raise UsageError("--memory auto is resolved against a device: use dcrt.memory.choose_profile")
    return PROFILES[name]


# What the estimate leaves out and a real run adds: library workspaces, the allocator's rounding, memory inside
# kernels (benchmarks/memory.py's docstring). `auto` asks for this much room beyond the estimate.
HEADROOM_FRACTION, HEADROOM_BYTES = 0.15, 512 * 2**20
ESTIMATES_FILE = "memory_estimates.json"  # beside this module, written by benchmarks/memory.py --write-estimates


@dataclass(frozen=True)
class PeakEstimate:
    """One profile's estimated peak device memory for one preset and dtype at the preset's size: what stays on
    the device (weights not offloaded) and the largest activation set on top of it."""

    resident_bytes: int
    activation_bytes: int
    pixels: int  # height x width x frames the estimate was made at

    def at_size(self, height: int, width: int, frames: int) -> int:
        """The peak for another size: activations grow with pixels x frames (attention's quadratic part is over
        frames, which a size change keeps), the resident weights do not."""
        return self.resident_bytes + self.activation_bytes * (height * width * frames) // self.pixels


def load_estimates() -> dict:
    """{preset: {dtype: {profile: PeakEstimate}}} from the committed estimates file."""
    import json
    from importlib.resources import files

    raw = json.loads(files("dcrt").joinpath(ESTIMATES_FILE).read_text())
    return {
        preset: {
            dtype: {name: PeakEstimate(**fields) for name, fields in profiles.items()}
            for dtype, profiles in by_dtype.items()
        }
        for preset, by_dtype in raw["estimates"].items()
    }


@dataclass(frozen=True)
class ProfileChoice:
    profile: MemoryProfile
    reason: str  # for the log line: why this profile


def choose_profile(
    name: str, preset: str, dtype: str, free_bytes: int | None, size: tuple[int, int, int], estimates: dict
) -> ProfileChoice:
    """`name` itself, or for `auto` the fastest profile whose estimated peak for `preset` in `dtype` at `size`
    (height, width, frames), with headroom, fits `free_bytes` of free device memory (None: no device to fit, the
    CPU: `fast`). No profile fits: `low`, and the reason says by how much it may not."""
    check_memory_name(name)
    if name != AUTO:
        return ProfileChoice(PROFILES[name], "asked for")
    if free_bytes is None:
        return ProfileChoice(FAST, "auto on the CPU: host memory is not budgeted")
    by_profile = estimates.get(preset, {}).get(dtype)
    if by_profile is None:
        return ProfileChoice(FAST, f"auto: no estimate for preset {preset} in {dtype} (benchmarks/memory.py)")
    free_gib = free_bytes / 2**30
    for profile in PROFILES.values():
        need = by_profile[profile.name].at_size(*size)
        if need * (1 + HEADROOM_FRACTION) + HEADROOM_BYTES <= free_bytes:
            return ProfileChoice(profile, f"auto: estimated peak {need / 2**30:.1f} GiB fits {free_gib:.1f} GiB free")
    need = by_profile[LOW.name].at_size(*size)
    return ProfileChoice(LOW, f"auto: even low's estimated {need / 2**30:.1f} GiB may not fit {free_gib:.1f} GiB free")
