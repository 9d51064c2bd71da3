"""Original `model.ckpt` / safetensors files <-> `DynamiCrafter`, with strict key accounting.

The original checkpoint is a Lightning pickle `{'state_dict': ...}` whose keys carry the original
module paths. Here every key is either a parameter/buffer of one of dcrt's components (mapped by
prefix) or one of the declared unused tensors of docs/models.md §2.3; anything else, anything missing and any
shape mismatch is an error. Files are untrusted: only tensors and a few inert Lightning metadata
types are unpickled, and tensors are memory-mapped rather than read (a 10 GB file needs no 10 GB copy).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

from dcrt.atomic import atomic_file
from dcrt.errors import CheckpointError, UsageError
from dcrt.families.dynamicrafter.config import Preset
from dcrt.families.dynamicrafter.presets import PRESETS as FAMILY_PRESETS
from dcrt.families.dynamicrafter.schedule import schedule_tensors
from dcrt.families.state_dicts import check_layout, norm_weight_keys, random_tensor, read_state_dict
from dcrt.models.dynamicrafter import DynamiCrafter
from dcrt.presets import get_preset

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


def detect_preset(shapes: dict[str, tuple[int, ...]]) -> Preset:
    """The one preset whose layout the keys match; ambiguous layouts (512 / 1024 / 512-interp) need a name."""
    matches = []
    for preset in FAMILY_PRESETS:
        try:
            check_keys(shapes, preset)
            matches.append(preset.name)
        except CheckpointError:
            pass
    if not matches:
        raise CheckpointError("checkpoint matches no dcrt preset (is it a DynamiCrafter model.ckpt?)")
    if len(matches) > 1:
        raise UsageError(f"checkpoint fits presets {', '.join(matches)}, which share one layout; choose one")
    return get_preset(matches[0])


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
