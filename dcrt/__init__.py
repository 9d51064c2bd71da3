"""dcrt: an inference engine for the DynamiCrafter image-to-video models.

The API names are imported on first use (PEP 562), so `import dcrt` and the command line's help and
argument errors do not pay for importing torch.
"""

from __future__ import annotations

from importlib import import_module

from dcrt.version import __version__

# API name -> the module that defines it.
_API = {
    "BackendRequest": "dcrt.loading",
    "open_backend": "dcrt.loading",
    "torch_backend": "dcrt.loading",
    "SamplingRequest": "dcrt.families.dynamicrafter.options",
    "load_model": "dcrt.families.dynamicrafter.checkpoint",
    "random_model": "dcrt.families.dynamicrafter.checkpoint",
    "save_checkpoint": "dcrt.families.dynamicrafter.checkpoint",
    "PRESETS": "dcrt.presets",
    "Preset": "dcrt.families.dynamicrafter.config",
    "get_preset": "dcrt.presets",
    "DynamiCrafter": "dcrt.models",
    # Stable Video Diffusion (docs/models.md §8): its presets, networks and weights.
    "SVDPreset": "dcrt.families.svd.config",
    "StableVideoDiffusion": "dcrt.models.svd",
    "load_svd_model": "dcrt.families.svd.checkpoint",
    "random_svd_model": "dcrt.families.svd.checkpoint",
    "save_svd_checkpoint": "dcrt.families.svd.checkpoint",
    "SVDRequest": "dcrt.families.svd.options",
    "animate_svd": "dcrt.api",
    "VideoResult": "dcrt.families.dynamicrafter.pipeline",
    "animate": "dcrt.api",
    "interpolate": "dcrt.api",
    "interpolate_keyframes": "dcrt.api",
    "loop": "dcrt.api",
    # The director (dcrt.director): motion prompts for an image.
    "describe": "dcrt.director.describe",
    "story": "dcrt.director.story",
}

__all__ = ["__version__", *sorted(_API)]


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'dcrt' has no attribute {name!r}")
    value = getattr(import_module(_API[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
