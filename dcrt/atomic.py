"""Write-then-rename: an interrupted write never leaves a half-written file or directory behind."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_file(target: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it becomes `target` (mode 0666 & ~umask)."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temporary directory beside `target`; on success it replaces `target` whole.

    Its files get mode 0666 & ~umask however they were written (safetensors writes 0600), so a
    service running as another user can read an export or engine directory.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        yield tmp
        mask = _umask()
        for path in tmp.rglob("*"):
            os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)
        os.chmod(tmp, 0o777 & ~mask)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_writable(target: Path, what: str) -> None:
    """That `target`, a file or folder (created when missing, with its missing parents), can be written: the
    nearest folder of it that exists must take a new file. Raises UsageError naming `what` ("output video", "export
    folder"). Probed by making and removing a file: permission bits say nothing of a read-only file system, nor of
    what root may write."""
    from dcrt.errors import UsageError

    target = Path(target)
    existing = next(p for p in (target, *target.parents) if p.exists())
    if existing == target and not target.is_dir():  # an existing file is replaced: its folder must take one
        existing = target.parent
    if not existing.is_dir():
        raise UsageError(f"{what} {target} cannot be created: {existing} is a file")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".dcrt-write-check.")
    except OSError as exc:
        raise UsageError(f"{what} {target} cannot be written: {existing} is not writable ({exc.strerror})") from None
    os.close(fd)
    os.unlink(probe)
