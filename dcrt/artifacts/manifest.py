"""`manifest.json`: what an export (and later an engine bundle) directory holds, and how to trust it.

A host reads it to find each graph's file, IO names/shapes/dtypes, and the sha256 that proves the
file is the one that was checked against the PyTorch reference. Files are hashed once, when written;
loading compares sizes (a stat), and re-hashes only when asked to verify (`file_problem`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dcrt.atomic import atomic_file
from dcrt.errors import UsageError

SCHEMA_VERSION = 2  # 2: the size of every listed file
MANIFEST_FILE = "manifest.json"


def sha256_file(path: Path, chunk: int = 16 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_problem(path: Path, sha256: str, size: int, full: bool = False) -> str | None:
    """What is wrong with `path` against its manifest record, completing "<path> ...", or None when it matches.
    Existence and size cost a stat and are always checked; the sha256 reads the whole file, only when `full`."""
    if not path.is_file():
        return "is missing"
    found = path.stat().st_size
    if found != size:
        return f"does not match the sha256 in its manifest (corrupt or modified: {found} bytes, {size} recorded)"
    if full and sha256_file(path) != sha256:
        return "does not match the sha256 in its manifest (corrupt or modified)"
    return None


STAMP_EDGE_BYTES = 1 << 20


def file_stamp(path: Path) -> dict:
    """A fingerprint of a (checkpoint) file that costs 2 MiB of reading, not a hash of all 10 GB: its size,
    modification time, and the sha256 of its first and last MiB (a .ckpt zip ends with every tensor's CRC-32).
    `file` is where it was, for messages only."""
    stat = Path(path).stat()
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        digest.update(f.read(STAMP_EDGE_BYTES))
        f.seek(max(stat.st_size - STAMP_EDGE_BYTES, 0))
        digest.update(f.read(STAMP_EDGE_BYTES))
    return {
        "file": str(Path(path).resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "edges_sha256": digest.hexdigest(),
    }


def write_manifest(manifest, directory: Path) -> Path:
    """A manifest dataclass as `directory/manifest.json` (indented JSON), written atomically: shared by exports
    and every bundle kind."""
    path = Path(directory) / MANIFEST_FILE
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(asdict(manifest), indent=2) + "\n")
    return path


def read_manifest(directory: Path, schema_version: int, parse, missing: str, schema_word: str, remedy: str, kind: str):
    """Read `directory/manifest.json` with `parse(dict)`; every failure is one UsageError naming the file."""
    path = Path(directory) / MANIFEST_FILE
    if not path.is_file():
        what = f"has no {MANIFEST_FILE}" if Path(directory).exists() else "does not exist"
        raise UsageError(f"{directory} {what}: {missing}")
    try:
        data = json.loads(path.read_text())
        if data.get("schema_version") != schema_version:
            raise UsageError(
                f"{path} has {schema_word} {data.get('schema_version')}, this dcrt reads {schema_version}{remedy}"
            )
        return parse(data)
    except (json.JSONDecodeError, TypeError, KeyError, AttributeError) as exc:
        raise UsageError(f"{path} is not a valid {kind} ({type(exc).__name__}: {exc})") from None


@dataclass
class ComponentEntry:
    file: str
    inputs: list[dict]
    outputs: list[dict]
    files: dict[str, str]  # every file of the graph (model + external data) -> sha256
    sizes: dict[str, int]  # the same files -> size in bytes
    bytes: int
    parity: dict  # {"rel_error", "max_abs", "tolerance"} measured in ONNX Runtime vs PyTorch


@dataclass
class ExportManifest:
    preset: str
    height: int
    width: int
    precision: str
    opset: int
    source: str  # checkpoint fingerprint ("sha256:..." or "random:<preset>:seed<n>")
    dcrt_version: str
    source_stamp: dict | None = None  # file_stamp of the checkpoint: compared on every run (dcrt.weights)
    components: dict[str, ComponentEntry] = field(default_factory=dict)
    # The checkpoint's noise-schedule tensors (safetensors, float32): file -> sha256, and file -> bytes.
    schedule: dict[str, str] = field(default_factory=dict)
    schedule_sizes: dict[str, int] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def write(self, directory: Path) -> Path:
        return write_manifest(self, directory)

    @classmethod
    def read(cls, directory: Path) -> ExportManifest:
        def parse(data: dict) -> ExportManifest:
            components = {k: ComponentEntry(**v) for k, v in data.pop("components").items()}
            return cls(**data, components=components)

        return read_manifest(
            directory,
            SCHEMA_VERSION,
            parse,
            missing="not a dcrt export (run `dcrt export`)",
            schema_word="schema version",
            remedy=": re-export it with `dcrt export --force`",
            kind="dcrt manifest",
        )

    def files(self) -> dict[str, str]:
        """Every listed file -> sha256."""
        listed = dict(self.schedule)
        for entry in self.components.values():
            listed |= entry.files
        return listed

    def sizes(self) -> dict[str, int]:
        """Every listed file -> size in bytes."""
        listed = dict(self.schedule_sizes)
        for entry in self.components.values():
            listed |= entry.sizes
        return listed

    def export_command(self, directory: Path) -> str:
        """The command that makes this export again in `directory` (its weights: the flag they were given by)."""
        weights = "--random-weights" if self.source.startswith("random:") else "--ckpt CHECKPOINT"
        size = f"--height {self.height} --width {self.width}"
        return (
            f"dcrt export --res {self.preset} {weights} {size} --precision {self.precision} --out {directory} --force"
        )

    def verify_files(self, directory: Path, full: bool = False) -> None:
        """Every listed file exists with its recorded size and, when `full`, its recorded sha256 (reads every
        byte: the sizes catch a partial or replaced file at the cost of a stat). Raises naming the first that
        does not."""
        sizes = self.sizes()
        for file, digest in self.files().items():
            problem = file_problem(Path(directory) / file, digest, sizes[file], full)
            if problem is not None:
                raise UsageError(
                    f"{Path(directory) / file} {problem}: re-export with `{self.export_command(directory)}`"
                )
