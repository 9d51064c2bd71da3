"""What every bundle kind carries for hosts without Python (the C++ host, cpp_host/): the manifest's host fields and
the vocabulary file they name. Shared by the AOTInductor build (dcrt.artifacts.aoti_build) and the TensorRT build
(dcrt.artifacts.tensorrt_build), so both bundles hold the same fields and the same file."""

from __future__ import annotations

from pathlib import Path

from dcrt.atomic import atomic_file
from dcrt.families import family_of
from dcrt.families.base import PresetBase

# The manifest fields host_fields fills in (None each for a family the host does not run).
HOST_FIELD_NAMES = ("parameterization", "sampling", "modes", "tokenizer")


def host_fields(preset: PresetBase) -> dict:
    """What the manifest records for the C++ host (`parameterization`, `sampling`, `modes`, `tokenizer`): the
    family's, None for a family the host does not run."""
    family = family_of(preset)
    if not family.has("host_fields"):
        return dict.fromkeys(HOST_FIELD_NAMES)
    return family.part("host_fields")(preset)


def write_host_files(directory: Path, fields: dict) -> None:
    """The file the host fields name: the CLIP BPE vocabulary (uncompressed: the C++ host reads it without zlib), so a
    host tokenizes prompts without Python. Written atomically; an identical one is kept."""
    if fields.get("tokenizer") is None:
        return
    import gzip

    from dcrt.models.tokenizer import vocabulary_file

    path = Path(directory) / fields["tokenizer"]
    text = gzip.decompress(vocabulary_file().read_bytes())
    if path.is_file() and path.read_bytes() == text:
        return
    with atomic_file(path, suffix=".txt") as tmp:
        tmp.write_bytes(text)
