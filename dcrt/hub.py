"""Finding and downloading the released checkpoints.

Search order: an explicit path, then `$DCRT_CHECKPOINT_DIR` (`<dir>/<preset>/model.ckpt` or the
original scripts' `<dir>/dynamicrafter_512_v1/model.ckpt`), then the Hugging Face cache. The file is the preset's
`checkpoint_file`: `model.ckpt` for DynamiCrafter, the original single file `svd_xt.safetensors` for SVD.
"""

from __future__ import annotations

import os
from pathlib import Path

from dcrt.errors import DcrtError, UsageError
from dcrt.families import family_of
from dcrt.families.base import PresetBase

CHECKPOINT_DIR_ENV = "DCRT_CHECKPOINT_DIR"


def _candidates(preset: PresetBase) -> list[Path]:
    root = os.environ.get(CHECKPOINT_DIR_ENV)
    if not root:
        return []
    names = [preset.name] + ([preset.checkpoint_dir_name] if preset.checkpoint_dir_name else [])
    return [Path(root) / name / preset.checkpoint_file for name in names]


def _hf_cached(preset: PresetBase) -> Path | None:
    if preset.hf_repo is None:
        return None
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id=preset.hf_repo, filename=preset.checkpoint_file)
    return Path(found) if isinstance(found, str) else None


def default_checkpoint(preset: PresetBase) -> Path | None:
    """The preset's checkpoint in $DCRT_CHECKPOINT_DIR, else in the Hugging Face cache; None if neither has it."""
    for path in _candidates(preset):
        if path.is_file():
            return path
    return _hf_cached(preset)


def _is_diffusers_folder(preset: PresetBase, path: Path) -> bool:
    """A release in folders (SVD's diffusers layout: unet/, vae/, image_encoder/): its family's loader reads the
    folder itself."""
    marker = family_of(preset).checkpoint_folder_marker
    return marker is not None and (path / marker).is_dir()


def find_checkpoint(preset: PresetBase, explicit: Path | None = None) -> Path:
    if explicit is not None:
        if explicit.is_dir() and _is_diffusers_folder(preset, explicit):
            return explicit
        if explicit.is_dir():
            explicit = explicit / preset.checkpoint_file
        if not explicit.is_file():
            raise UsageError(f"checkpoint {explicit} does not exist")
        if explicit.stat().st_size == 0:  # an interrupted copy or download; torch's own message is about mmap
            raise UsageError(f"checkpoint {explicit} is an empty file (0 bytes): copy or download it again")
        return explicit
    found = default_checkpoint(preset)
    if found is not None:
        return found
    if preset.hf_repo is None:
        raise UsageError(f"preset {preset.name} has no released checkpoint; pass --ckpt or --random-weights")
    raise UsageError(
        f"no checkpoint for preset {preset.name}: pass --ckpt, set {CHECKPOINT_DIR_ENV}, "
        f"or download it with `dcrt fetch --res {preset.name}`"
    )


def fetch_checkpoint(preset: PresetBase) -> Path:
    """Download (resumably) into the Hugging Face cache; returns the local path."""
    if preset.hf_repo is None:
        raise UsageError(f"preset {preset.name} has no released checkpoint to download")
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id=preset.hf_repo, filename=preset.checkpoint_file))
    except Exception as exc:  # network, auth and disk errors all end the command with one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DcrtError(f"cannot download {preset.hf_repo}/{preset.checkpoint_file}: {first}") from None
