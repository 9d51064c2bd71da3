"""Whether an export or bundle on disk serves a request (`mismatch`): its manifest must hold the requested preset, size
and weights (dcrt.weights); what it lacks is said in one line, for `--backend auto`'s notice or an explicit
backend's error."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dcrt.families.base import PresetBase
from dcrt.weights import Weights, describe_source, made_from

EXPORT, TRT, AOTI = "export", "trt", "aoti"  # the kinds of artifact a run may load
Log = Callable[[str], None]


@dataclass(frozen=True)
class ArtifactNeeds:
    """What a run needs from an export or engine bundle. `weights` None: no checkpoint is at hand, so
    the artifact's own weights are used."""

    preset: PresetBase
    height: int
    width: int
    weights: Weights | None = None


@dataclass(frozen=True)
class ArtifactMismatch:
    """Why the export or bundle at `location` cannot serve a request, and the command that makes one that can."""

    location: Path
    fact: str  # completes "<location> ..."
    remedy: str

    def error(self) -> str:
        return f"{self.location} {self.fact}: {self.remedy}, or choose --backend torch"

    def notice(self) -> str:
        return f"not using {self.location}: it {self.fact} ({self.remedy} to use it)"


def mismatch(location: Path, kind: str, needs: ArtifactNeeds, log: Log) -> tuple[ArtifactMismatch | None, str]:
    """(why the export (kind EXPORT) or bundle (TRT, AOTI) at `location` cannot serve `needs`, or None; the
    weights it holds). Raises UsageError when its manifest is missing or unreadable."""
    from dcrt.artifacts.aoti_bundle import AotiManifest
    from dcrt.artifacts.engine_bundle import EngineManifest
    from dcrt.artifacts.manifest import ExportManifest

    name, h, w, weights = needs.preset.name, needs.height, needs.width, needs.weights
    if kind == TRT:
        manifest = EngineManifest.read(location)
        source, stamp = manifest.export.get("source", ""), manifest.export.get("source_stamp")
        verb, command = "rebuild", f"dcrt build --res {name}"
    elif kind == AOTI:
        manifest = AotiManifest.read(location)
        source, stamp = manifest.source, manifest.source_stamp
        verb, command = "rebuild", f"dcrt build --res {name} --engine aoti --device {manifest.device}"
    else:
        manifest = ExportManifest.read(location)
        source, stamp = manifest.source, manifest.source_stamp
        verb, command = "re-export", f"dcrt export --res {name} --out {location}"
    holds = describe_source(source, stamp)

    def remedy(how: str, flags: str = "") -> str:
        return f"{verb} it {how} with `{command}{flags}`"

    if manifest.preset != name:
        other = f"holds preset {manifest.preset}, not {name}"
        return ArtifactMismatch(location, other, remedy("for that preset")), holds
    if (manifest.height, manifest.width) != (h, w):
        size = f"holds {manifest.height}x{manifest.width} graphs, not {h}x{w}"
        return ArtifactMismatch(location, size, remedy("at that size", f" --height {h} --width {w}")), holds
    if weights is not None and not made_from(weights, source, stamp, log):
        flag = "--random-weights" if weights.checkpoint is None else f"--ckpt {weights.checkpoint}"
        made = f"was made from {holds}, not {weights}"
        return ArtifactMismatch(location, made, remedy("from those weights", f" {flag}")), holds
    return None, holds
