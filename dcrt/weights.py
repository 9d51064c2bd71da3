"""Which weights a run asks for, and whether an export or engine bundle was made from them.

A checkpoint is a file, or (SVD) a diffusers folder, fingerprinted over its safetensors and json files.

An export's manifest records its `source`: `random:<preset>:seed0`, or `sha256:<hex>` of the checkpoint
file together with a cheap stamp of that file (`dcrt.artifacts.manifest.file_stamp`). A run compares stamps, which
reads 2 MiB instead of hashing a 10 GB checkpoint. Only a file that differs from the stamp in its
modification time alone (a copy), or a manifest written before stamps existed, is hashed in full.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from dcrt.artifacts.manifest import file_stamp, sha256_file
from dcrt.errors import UsageError
from dcrt.families.base import PresetBase

RANDOM_SEED = 0  # the seed of --random-weights, and of the presets that have no released checkpoint
_CONTENT_KEYS = ("size", "edges_sha256")  # what a copy keeps; its modification time is new


@dataclass(frozen=True)
class Weights:
    """A checkpoint file, or (checkpoint None) a preset's random weights seeded with RANDOM_SEED."""

    preset: str
    checkpoint: Path | None = None

    def source(self) -> str:
        """The `source` an export records. Hashes the whole checkpoint (for exports, not for every run) the first
        time it is asked, then remembers it: a `Weights` stands for the file as it is during one command."""
        if self.checkpoint is None:
            return f"random:{self.preset}:seed{RANDOM_SEED}"
        return "sha256:" + self._sha256

    @cached_property
    def _sha256(self) -> str:  # cached_property writes the instance dict, which a frozen dataclass allows
        if self.checkpoint.is_dir():
            return _combined(self.checkpoint, lambda f: sha256_file(f))
        return sha256_file(self.checkpoint)

    def stamp(self) -> dict | None:
        if self.checkpoint is None:
            return None
        if not self.checkpoint.is_dir():
            return file_stamp(self.checkpoint)
        stamps = [file_stamp(f) for f in _folder_files(self.checkpoint)]
        return {
            "file": str(self.checkpoint.resolve()),
            "size": sum(s["size"] for s in stamps),
            "mtime_ns": max(s["mtime_ns"] for s in stamps),
            "edges_sha256": _combined(self.checkpoint, lambda f: file_stamp(f)["edges_sha256"]),
        }

    def __str__(self) -> str:
        return str(self.checkpoint) if self.checkpoint is not None else self.source()


def _folder_files(folder: Path) -> list[Path]:
    """What a diffusers folder's weights are (an SVD release, docs/models.md §8.3): its safetensors and json."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in (".safetensors", ".json"))


def _combined(folder: Path, digest: Callable[[Path], str]) -> str:
    """One sha256 over every weight file's relative path and `digest`: a folder's fingerprint."""
    lines = "".join(f"{p.relative_to(folder).as_posix()}\0{digest(p)}\n" for p in _folder_files(folder))
    return hashlib.sha256(lines.encode()).hexdigest()


def requested_weights(preset: PresetBase, ckpt: Path | None = None, random_weights: bool = False) -> Weights | None:
    """The weights a run asks for: random (--random-weights, or a preset with no released checkpoint), the
    --ckpt file, else the preset's checkpoint found on this machine. None: no checkpoint is here, so an
    export or engine bundle may supply the weights (a host that holds only engines)."""
    from dcrt.hub import default_checkpoint, find_checkpoint

    if random_weights and ckpt is not None:
        raise UsageError("--ckpt and --random-weights exclude each other: choose one")
    if random_weights or (preset.hf_repo is None and ckpt is None):
        return Weights(preset.name)
    if ckpt is not None:
        return Weights(preset.name, find_checkpoint(preset, ckpt))
    found = default_checkpoint(preset)
    return None if found is None else Weights(preset.name, found)


def required_weights(preset: PresetBase, ckpt: Path | None = None, random_weights: bool = False) -> Weights:
    """`requested_weights`, where no checkpoint is an error that says how to get one (export, torch)."""
    from dcrt.hub import find_checkpoint

    weights = requested_weights(preset, ckpt, random_weights)
    return weights if weights is not None else Weights(preset.name, find_checkpoint(preset))


def describe_source(source: str, stamp: dict | None) -> str:
    """An artifact's weights in a message: the checkpoint's path when recorded, else the fingerprint."""
    if stamp is not None:
        return stamp["file"]
    return source if source.startswith("random:") else source[: len("sha256:") + 12] + "..."


def made_from(
    weights: Weights, source: str, stamp: dict | None, log: Callable[[str], None] = lambda message: None
) -> bool:
    """Whether an artifact whose manifest records (`source`, `stamp`) was made from `weights`."""
    if weights.checkpoint is None:
        return source == weights.source()  # the recorded preset and seed say it all
    if not source.startswith("sha256:"):
        return False
    here = weights.stamp()
    if stamp is not None:
        if any(stamp[k] != here[k] for k in _CONTENT_KEYS):
            return False
        if stamp["mtime_ns"] == here["mtime_ns"]:
            return True
    log(f"hashing {weights.checkpoint} to compare it with the recorded sha256 (a copy, or an older manifest)")
    return source == weights.source()
