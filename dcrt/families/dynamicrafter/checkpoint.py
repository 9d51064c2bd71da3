"""Original `model.ckpt` / safetensors files <-> `DynamiCrafter`, with strict key accounting.

The original checkpoint is a Lightning pickle `{'state_dict': ...}` whose keys carry the original
module paths. Here every key is either a parameter/buffer of one of dcrt's components (mapped by
prefix) or one of the declared unused tensors of docs/models.md §2.3; anything else, anything missing and any
shape mismatch is an error. Files are untrusted: only tensors and a few inert Lightning metadata
types are unpickled, and tensors are memory-mapped rather than read (a 10 GB file needs no 10 GB copy).
"""

from __future__ import annotations

import functools
import math
import os
import pickle
import zlib
from pathlib import Path

import torch

from dcrt.atomic import atomic_file
from dcrt.errors import CheckpointError, UsageError
from dcrt.families.dynamicrafter.config import Preset
from dcrt.families.dynamicrafter.schedule import schedule_tensors
from dcrt.models.dynamicrafter import DynamiCrafter
from dcrt.presets import PRESETS, get_preset

# dcrt component -> prefix of its keys in the original state_dict. Schedule buffers have no prefix.
COMPONENT_PREFIXES = {
    "unet": "model.diffusion_model.",
    "vae": "first_stage_model.",
    "text_encoder": "cond_stage_model.model.",
    "image_encoder": "embedder.model.",
    "resampler": "image_proj_model.",
    "schedule": "",
}
_UNET_FS_NAME = "model.diffusion_model.fps_embedding."


# Weight precisions by the names the command line and reports use.
WEIGHT_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def unused_tensor_shapes(preset: Preset) -> dict[str, tuple[int, ...]]:
    """Tensors every released checkpoint holds but inference never reads (docs/models.md §2.3)."""
    text, image = preset.text, preset.image
    w = text.width
    last = f"cond_stage_model.model.transformer.resblocks.{text.layers - 1}."
    block = {
        "ln_1.weight": (w,),
        "ln_1.bias": (w,),
        "attn.in_proj_weight": (3 * w, w),
        "attn.in_proj_bias": (3 * w,),
        "attn.out_proj.weight": (w, w),
        "attn.out_proj.bias": (w,),
        "ln_2.weight": (w,),
        "ln_2.bias": (w,),
        "mlp.c_fc.weight": (text.mlp_ratio * w, w),
        "mlp.c_fc.bias": (text.mlp_ratio * w,),
        "mlp.c_proj.weight": (w, text.mlp_ratio * w),
        "mlp.c_proj.bias": (w,),
    }
    shapes = {last + k: v for k, v in block.items()}
    shapes |= {
        "cond_stage_model.model.text_projection": (w, text.projection_dim),
        "cond_stage_model.model.logit_scale": (),
        # The image embedder's copy of CLIP lost only its text transformer (docs/models.md §2.3).
        "embedder.model.token_embedding.weight": (text.vocab_size, w),
        "embedder.model.positional_embedding": (text.context_length, w),
        "embedder.model.ln_final.weight": (w,),
        "embedder.model.ln_final.bias": (w,),
        "embedder.model.text_projection": (w, text.projection_dim),
        "embedder.model.logit_scale": (),
        "embedder.model.visual.ln_post.weight": (image.width,),
        "embedder.model.visual.ln_post.bias": (image.width,),
        "embedder.model.visual.proj": (image.width, image.projection_dim),
    }
    return shapes


def _component_keys(model: DynamiCrafter):
    """Yield (original key, component name, key inside the component, tensor)."""
    fs_name = f"{COMPONENT_PREFIXES['unet']}{model.preset.fs_embed_checkpoint_name}."
    for component, prefix in COMPONENT_PREFIXES.items():
        for key, tensor in getattr(model, component).state_dict(keep_vars=True).items():
            original = prefix + key
            if original.startswith(_UNET_FS_NAME):
                original = fs_name + original[len(_UNET_FS_NAME) :]
            yield original, component, key, tensor


def expected_shapes(preset: str | Preset) -> dict[str, tuple[int, ...]]:
    """Every key and shape of the preset's original checkpoint (built on the meta device: free)."""
    return dict(_expected_shapes(get_preset(preset)))


@functools.lru_cache(maxsize=None)
def _expected_shapes(preset: Preset) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = DynamiCrafter(preset)
    shapes = {key: tuple(t.shape) for key, _, _, t in _component_keys(model)}
    return shapes | unused_tensor_shapes(preset)


def _normalise_fs_name(key: str) -> str:
    # Accept both names of the UNet's fs MLP, as the original loader does (docs/models.md §1.8).
    return key.replace("model.diffusion_model.framestride_embed.", _UNET_FS_NAME)


def check_keys(shapes: dict[str, tuple[int, ...]], preset: Preset) -> None:
    """Raise one line naming the first mismatches if `shapes` is not exactly the preset's layout."""
    expected = {_normalise_fs_name(k): v for k, v in expected_shapes(preset).items()}
    got = {_normalise_fs_name(k): v for k, v in shapes.items()}
    check_layout(got, expected, preset.name)


def check_layout(got: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]], preset_name: str) -> None:
    """Raise one line naming the first missing, unexpected and mis-shaped keys of `got` against `expected`."""
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    wrong = [f"{k} {list(got[k])} (preset wants {list(v)})" for k, v in expected.items() if k in got and got[k] != v]
    if missing or unexpected or wrong:
        parts = []
        for label, items in (("shape mismatch", wrong), ("missing", missing), ("unexpected", unexpected)):
            if items:
                parts.append(f"{len(items)} {label}: {', '.join(items[:3])}{' ...' if len(items) > 3 else ''}")
        raise CheckpointError(f"checkpoint does not match preset {preset_name!r}: {'; '.join(parts)}")


def detect_preset(shapes: dict[str, tuple[int, ...]]) -> Preset:
    """The one preset whose layout the keys match; ambiguous layouts (512 / 1024 / 512-interp) need a name."""
    matches = []
    for preset in (p for p in PRESETS.values() if p.family == "dynamicrafter"):
        try:
            check_keys(shapes, preset)
            matches.append(preset.name)
        except CheckpointError:
            pass
    if not matches:
        raise CheckpointError("checkpoint matches no dcrt preset (is it a DynamiCrafter model.ckpt?)")
    if len(matches) > 1:
        raise UsageError(f"checkpoint fits presets {', '.join(matches)}, which share one layout; choose one")
    return PRESETS[matches[0]]


# --- reading untrusted files -------------------------------------------------------------------

_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor_v3"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch", "Size"),
    ("torch.storage", "UntypedStorage"),
    ("torch.storage", "TypedStorage"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "object"),
    ("copyreg", "_reconstructor"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
}
_TORCH_TYPE_SUFFIXES = ("Storage", "float16", "float32", "float64", "bfloat16", "int64", "int32", "uint8", "bool")
# Lightning stores trainer/callback/hyper-parameter objects beside the state_dict. They become inert
# placeholders: their classes are never imported and none of their code runs.
_INERT_MODULE_PREFIXES = ("pytorch_lightning", "lightning", "lightning_fabric", "omegaconf", "argparse", "typing")


class _Inert:
    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED_GLOBALS or (module == "torch" and name.endswith(_TORCH_TYPE_SUFFIXES)):
            return super().find_class(module, name)
        if module.split(".")[0] in _INERT_MODULE_PREFIXES:
            return _Inert
        raise CheckpointError(f"refusing to unpickle {module}.{name}: checkpoints may only contain tensors")


class _RestrictedPickle:
    """The `pickle_module` torch.load uses: a pickle whose Unpickler admits tensors only."""

    __name__ = "dcrt_restricted_pickle"
    Unpickler = _RestrictedUnpickler

    @staticmethod
    def load(file, **kwargs):
        return _RestrictedUnpickler(file, **kwargs).load()


def _read_pickle_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", mmap=True, weights_only=False, pickle_module=_RestrictedPickle)
    except CheckpointError:
        raise
    except Exception as exc:  # torch raises RuntimeError, EOFError, UnpicklingError, ... for damaged files
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: truncated or not a PyTorch checkpoint ({first_line})")
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} holds no state_dict of tensors")
    return state


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path)  # memory-mapped
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read safetensors file {path}: {exc}") from None


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Original-layout tensors of a `.ckpt`/`.pt`/`.pth` (Lightning pickle) or `.safetensors` file."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"checkpoint {path} does not exist or is not a file")
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    return _read_pickle_checkpoint(path)


# --- model <-> checkpoint ----------------------------------------------------------------------


def _load_into(model: DynamiCrafter, state: dict[str, torch.Tensor]) -> None:
    state = {_normalise_fs_name(k): v for k, v in state.items()}
    per_component: dict[str, dict[str, torch.Tensor]] = {name: {} for name in COMPONENT_PREFIXES}
    for original, component, key, _ in _component_keys(model):
        per_component[component][key] = state.pop(_normalise_fs_name(original))
    for component, tensors in per_component.items():
        getattr(model, component).load_state_dict(tensors, strict=True, assign=True)
    model.unused = state  # exactly the declared unused tensors, after check_keys


def load_model(
    path: str | os.PathLike,
    preset: str | Preset | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> DynamiCrafter:
    """Load an original checkpoint strictly. `preset=None` detects it where the keys tell."""
    state = read_state_dict(path)
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    preset = detect_preset(shapes) if preset is None else get_preset(preset)
    check_keys(shapes, preset)
    with torch.device("meta"):
        model = DynamiCrafter(preset)
    _load_into(model, state)
    model.schedule.float()
    return model.place(device, dtype).eval().requires_grad_(False)


def original_state_dict(model: DynamiCrafter) -> dict[str, torch.Tensor]:
    state = {key: tensor.detach() for key, _, _, tensor in _component_keys(model)}
    return state | model.unused


def save_checkpoint(model: DynamiCrafter, path: str | os.PathLike) -> Path:
    """Write the original layout: a `{'state_dict': ...}` pickle, or safetensors by file extension.

    Written to a temporary file and renamed, so an interrupted save leaves nothing half-written.
    """
    path = Path(path)
    state = {k: v.contiguous() for k, v in original_state_dict(model).items()}
    missing = set(unused_tensor_shapes(model.preset)) - set(state)
    if missing:
        raise CheckpointError(
            f"model lacks the unused checkpoint tensors {sorted(missing)[:3]}; cannot write a complete file"
        )
    with atomic_file(path) as tmp:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(state, tmp, metadata={"format": "pt", "dcrt_preset": model.preset.name})
        else:
            torch.save({"state_dict": state}, tmp)
    return path


# --- seeded random weights ---------------------------------------------------------------------


def random_tensor(
    key: str, shape: tuple[int, ...], seed: int, is_norm_weight: bool, g: torch.Generator
) -> torch.Tensor:
    """A seeded tensor per key (independent of build order), every element non-zero almost surely.

    Norm weights sit near 1, biases and scalars near 0, matrices at 1/sqrt(fan_in), so activations
    stay O(1) through the full-depth networks.
    """
    g.manual_seed(seed * 1_000_003 + zlib.crc32(key.encode()))
    x = torch.randn(shape, generator=g, device=g.device)
    if is_norm_weight:
        return 1.0 + 0.1 * x
    if len(shape) <= 1:
        return 0.05 * x if not key.endswith(".alpha") else 0.5 * x
    is_layer_weight = key.endswith(".weight") or key.endswith("_weight")
    fan_in = math.prod(shape[1:]) if is_layer_weight else shape[-1]
    return x / fan_in**0.5


def norm_weight_keys(model: torch.nn.Module, components) -> set[tuple[str, str]]:
    """(component, key) of every GroupNorm / LayerNorm weight of the named components."""
    keys = set()
    for component in components:
        for name, module in getattr(model, component).named_modules():
            if isinstance(module, (torch.nn.GroupNorm, torch.nn.LayerNorm)):
                keys.add((component, f"{name}.weight"))
    return keys


def random_model(
    preset: str | Preset, seed: int = 0, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> DynamiCrafter:
    """Seeded random weights at the preset's real architecture (tests and demos need no download).

    On a CUDA device the weights are drawn there (seconds for the full-size models, where the CPU takes
    minutes); CUDA's generator gives other values than the CPU's for the same seed.
    """
    preset = get_preset(preset)
    with torch.device("meta"):
        model = DynamiCrafter(preset)
    draw_on = torch.device(device) if torch.device(device).type == "cuda" else torch.device("cpu")
    norms, g = norm_weight_keys(model, COMPONENT_PREFIXES), torch.Generator(device=draw_on)
    state = {
        original: random_tensor(original, tuple(t.shape), seed, (component, key) in norms, g)
        for original, component, key, t in _component_keys(model)
        if component != "schedule"
    }
    for key, shape in unused_tensor_shapes(preset).items():
        # unused at inference: kept on the CPU, as a loaded checkpoint keeps them
        state[key] = random_tensor(key, shape, seed, ".ln_" in key and key.endswith(".weight"), g).cpu()
    state |= schedule_tensors(preset.diffusion)
    _load_into(model, state)
    return model.place(device, dtype).eval().requires_grad_(False)
