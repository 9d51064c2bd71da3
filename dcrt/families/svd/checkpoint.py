"""Stable Video Diffusion weights <-> `StableVideoDiffusion`, strictly, from either released layout (docs/models.md
§8.3): Stability's single file (`svd_xt.safetensors`) or the diffusers folders (`unet/`, `vae/`, `image_encoder/`).

Both are read as safetensors only (tensors, nothing executable) and accepted in fp32, fp16 or bf16. Every key is
accounted for: a parameter of one of dcrt's three networks, or (original file only) one of the declared unused
tensors; anything missing, unexpected or mis-shaped is a one-line `CheckpointError`.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import replace
from pathlib import Path

import torch

from dcrt.atomic import atomic_file
from dcrt.errors import CheckpointError, UsageError
from dcrt.families.state_dicts import check_layout, norm_weight_keys, random_tensor, read_safetensors
from dcrt.families.svd.config import SVDPreset
from dcrt.families.svd.keys import ORIGINAL_PREFIXES, diffusers_to_original
from dcrt.families.svd.presets import PRESETS as FAMILY_PRESETS
from dcrt.models.svd import NETWORKS, StableVideoDiffusion
from dcrt.models.vae import Decoder, Encoder
from dcrt.presets import get_preset

# The diffusers folders and their weight files, the full-precision name first (the release also has `.fp16`).
DIFFUSERS_FILES = {
    "unet": ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"),
    "vae": ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"),
    "image_encoder": ("model.safetensors", "model.fp16.safetensors"),
}
_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _original_name(component: str, key: str) -> str:
    for original, inner in ORIGINAL_PREFIXES[component]:
        if key.startswith(inner):
            return original + key[len(inner) :]
    raise AssertionError(f"{component}.{key} has no original prefix")  # a module added without its prefix


def _component_keys(model: StableVideoDiffusion):
    """Yield (original key, component, key inside the component, tensor)."""
    for component in NETWORKS:
        for key, tensor in getattr(model, component).state_dict(keep_vars=True).items():
            yield _original_name(component, key), component, key, tensor


def _shapes(module: torch.nn.Module, prefix: str) -> dict[str, tuple[int, ...]]:
    return {prefix + k: tuple(v.shape) for k, v in module.state_dict().items()}


def unused_tensor_shapes(preset: SVDPreset) -> dict[str, tuple[int, ...]]:
    """What the original file holds beside the three networks (docs/models.md §8.3): the first stage's own encoder,
    the conditioner autoencoder's image decoder, and what the image embedder's CLIP kept of its text tower."""
    z, conditioner = preset.vae.z_channels, "conditioner.embedders.3.encoder."
    with torch.device("meta"):
        shapes = _shapes(Encoder(preset.vae), "first_stage_model.encoder.")
        shapes |= _shapes(Decoder(replace(preset.vae, video=None)), conditioner + "decoder.")
    text, clip = preset.text, "conditioner.embedders.0.open_clip.model."
    return shapes | {
        conditioner + "post_quant_conv.weight": (z, z, 1, 1),
        conditioner + "post_quant_conv.bias": (z,),
        clip + "token_embedding.weight": (text.vocab_size, text.width),
        clip + "positional_embedding": (text.context_length, text.width),
        clip + "ln_final.weight": (text.width,),
        clip + "ln_final.bias": (text.width,),
        clip + "text_projection": (text.width, text.projection_dim),
        clip + "logit_scale": (),
    }


@functools.lru_cache(maxsize=None)
def _network_shapes(preset: SVDPreset) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = StableVideoDiffusion(preset)
    return {key: tuple(t.shape) for key, _, _, t in _component_keys(model)}


def expected_shapes(preset: SVDPreset, layout: str = "original") -> dict[str, tuple[int, ...]]:
    """Every key and shape, in original names, of the preset's original file or (layout "diffusers") of its
    diffusers folders translated to original names (the networks only)."""
    shapes = dict(_network_shapes(preset))
    return shapes | unused_tensor_shapes(preset) if layout == "original" else shapes


# --- reading both layouts --------------------------------------------------------------------------------------


def _weight_files(folder: Path, names: tuple[str, ...]) -> list[Path]:
    """The folder's weight file, or the shards its `*.index.json` lists (names only: no path leaves the folder)."""
    for name in names:
        if (folder / name).is_file():
            return [folder / name]
        index = folder / f"{name}.index.json"
        if index.is_file():
            try:
                shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                raise CheckpointError(f"cannot read shard index {index}: {exc}") from None
            if any(not isinstance(s, str) or Path(s).name != s for s in shards):
                raise CheckpointError(f"shard index {index} names files outside its folder")
            return [folder / s for s in shards]
    raise CheckpointError(
        f"{folder} has no {' or '.join(names)} (a diffusers SVD folder needs unet/, vae/, image_encoder/)"
    )


def _read_folder(root: Path, component: str) -> dict[str, torch.Tensor]:
    state = {}
    for path in _weight_files(root / component, DIFFUSERS_FILES[component]):
        state |= read_safetensors(path)
    return state


def read_svd_state(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], str]:
    """(tensors in original names, layout): an original `.safetensors` file, or a diffusers model folder."""
    path = Path(path)
    if path.is_dir():
        parts = {component: _read_folder(path, component) for component in DIFFUSERS_FILES}
        return diffusers_to_original(**parts), "diffusers"
    if not path.is_file():
        raise UsageError(f"checkpoint {path} does not exist")
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path}: SVD weights are read from .safetensors files or diffusers folders only")
    return read_safetensors(path), "original"


def _check_dtypes(state: dict[str, torch.Tensor], source: str) -> None:
    odd = next((k for k, v in state.items() if v.dtype not in _FLOAT_DTYPES), None)
    if odd is not None:
        raise CheckpointError(f"{source}: tensor {odd} is {state[odd].dtype}; SVD weights must be fp32, fp16 or bf16")


def detect_svd_preset(shapes: dict[str, tuple[int, ...]], layout: str) -> SVDPreset:
    for preset in FAMILY_PRESETS:
        if expected_shapes(preset, layout) == shapes:
            return preset
    raise CheckpointError(f"checkpoint ({layout} layout) matches no SVD preset (is it Stable Video Diffusion XT?)")


def _load_into(model: StableVideoDiffusion, state: dict[str, torch.Tensor]) -> None:
    per_component: dict[str, dict[str, torch.Tensor]] = {name: {} for name in NETWORKS}
    for original, component, key, _ in _component_keys(model):
        per_component[component][key] = state.pop(original)
    for component, tensors in per_component.items():
        getattr(model, component).load_state_dict(tensors, strict=True, assign=True)
    model.unused = state  # exactly the declared unused tensors (none from diffusers folders), after the check


def load_svd_model(
    path: str | os.PathLike,
    preset: str | SVDPreset | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> StableVideoDiffusion:
    """Load either layout strictly. `preset=None` detects it from the keys and shapes."""
    state, layout = read_svd_state(path)
    return load_svd_state(state, layout, preset, device, dtype, source=str(path))


def load_svd_state(
    state: dict[str, torch.Tensor],
    layout: str,
    preset: str | SVDPreset | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    source: str = "checkpoint",
) -> StableVideoDiffusion:
    """Tensors in original names (`layout` says which file kind they came from) -> the model. Takes the tensors
    themselves (`assign`), so weights read from a memory-mapped file are not copied unless `dtype` asks."""
    _check_dtypes(state, source)
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    preset = detect_svd_preset(shapes, layout) if preset is None else get_preset(preset)
    preset.require_family("svd", "loading Stable Video Diffusion weights")
    check_layout(shapes, expected_shapes(preset, layout), preset.name)
    with torch.device("meta"):
        model = StableVideoDiffusion(preset)
    _load_into(model, dict(state))
    return model.place(device, dtype).eval().requires_grad_(False)


def save_svd_checkpoint(model: StableVideoDiffusion, path: str | os.PathLike) -> Path:
    """Write the original single-file layout (safetensors), through a temporary file and a rename."""
    path = Path(path)
    state = {key: tensor.detach().contiguous() for key, _, _, tensor in _component_keys(model)}
    state |= {k: v.contiguous() for k, v in model.unused.items()}
    missing = set(unused_tensor_shapes(model.preset)) - set(state)
    if missing:
        raise CheckpointError(f"model lacks the unused tensors {sorted(missing)[:3]}; cannot write a complete file")
    from safetensors.torch import save_file

    with atomic_file(path) as tmp:
        save_file(state, tmp, metadata={"format": "pt", "dcrt_preset": model.preset.name})
    return path


def random_svd_model(
    preset: str | SVDPreset, seed: int = 0, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> StableVideoDiffusion:
    """Seeded random weights at the preset's architecture, with the unused tensors a real file has (tests, demos)."""
    preset = get_preset(preset)
    with torch.device("meta"):
        model = StableVideoDiffusion(preset)
    norms, g = norm_weight_keys(model, NETWORKS), torch.Generator()
    state = {
        original: random_tensor(original, tuple(t.shape), seed, (component, key) in norms, g)
        for original, component, key, t in _component_keys(model)
    }
    for key, shape in unused_tensor_shapes(preset).items():
        state[key] = random_tensor(key, shape, seed, False, g)
    _load_into(model, state)
    return model.place(device, dtype).eval().requires_grad_(False)
