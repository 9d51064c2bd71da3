"""Jobs and prompt files. The original's `prompt_dir` convention: images sorted by name, one prompt per line of
a .txt file; image i pairs with prompt i, for interpolation images 2i and 2i+1 with prompt i. A line `auto` (or
`batch --auto-prompt`, for every job) leaves the job's prompt to `dcrt describe`: its prompt is None. Chained clips
(`interpolate --prompts`, `animate --extend-prompts`) read one prompt per clip the same way. Torch-free."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dcrt.errors import UsageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# A prompt file's line, or a storyboard's prompt, that leaves the prompt to `dcrt describe` (its best ranked).
AUTO_PROMPT = "auto"


@dataclass(frozen=True)
class Job:
    images: list[Path]
    prompt: str | None  # None: chosen by `dcrt describe` (DynamiCrafter), or no text conditioning (SVD)
    name: str  # output file stem
    # interpolate through more than two key frames: one prompt per consecutive pair (None: `prompt` for each)
    pair_prompts: list[str] | None = None


def read_prompt_dir(
    directory: Path, mode: str, prompts_file: Path | None = None, auto_prompt: bool = False
) -> list[Job]:
    """The folder's jobs: its images sorted by name with the prompt file's lines (`prompts_file`, else the folder's
    first .txt); a line AUTO_PROMPT, or every job with `auto_prompt` (no prompt file read), gets prompt None."""
    if not directory.is_dir():
        raise UsageError(f"{directory} is not a directory")
    images = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    per_job = 2 if mode == "interpolate" else 1
    if auto_prompt:
        if not images:
            raise UsageError(f"{directory} has no .jpg/.jpeg/.png images")
        if len(images) % per_job:
            raise UsageError(f"{directory}: {len(images)} images, but {mode} needs {per_job} images per video")
        prompts: list[str | None] = [None] * (len(images) // per_job)
    else:
        if prompts_file is None:
            texts = sorted(directory.glob("*.txt"))
            if not texts:
                raise UsageError(f"{directory} has no .txt prompt file (one prompt per line; or --auto-prompt)")
            prompts_file = texts[0]
        lines = read_prompt_lines(prompts_file, None, "image" if mode != "interpolate" else "pair of images")
        if not images:
            raise UsageError(f"{directory} has no .jpg/.jpeg/.png images")
        if len(images) != per_job * len(lines):
            raise UsageError(
                f"{directory}: {len(images)} images but {len(lines)} prompts in {prompts_file.name} "
                f"({mode} needs {per_job} image{'s' if per_job > 1 else ''} per prompt)"
            )
        prompts = [None if line == AUTO_PROMPT else line for line in lines]
    groups = [images[i : i + per_job] for i in range(0, len(images), per_job)]
    return [Job(group, prompt, group[0].stem) for group, prompt in zip(groups, prompts)]


def read_prompt_lines(path: Path, clips: int | None, what: str) -> list[str]:
    """A prompt file: one non-empty line per clip (`clips` of them; None: any number but none), `what` says
    which clips in an error."""
    if not path.is_file():
        raise UsageError(f"prompt file {path} does not exist")
    data = path.read_bytes()
    text = data.decode("utf-8", errors="replace")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or (clips is not None and len(lines) != clips):
        count = f", {clips}" if clips else ""
        raise UsageError(f"{path} has {len(lines)} prompts: it needs one line per {what}{count}")
    try:  # said once the file is otherwise good
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        notice = f"{path} is not UTF-8 (line {line} first): its undecodable bytes are read as U+FFFD"
        warnings.warn(notice, stacklevel=2)
    return lines


def readable_prompt(prompt: str | None, what: str = "the prompt") -> str | None:
    """`prompt` as the tokenizer should see it: bytes of a command line that were not UTF-8 (Python keeps them as
    lone surrogates) become U+FFFD, with a notice, rather than tokens of nothing the user wrote."""
    if prompt is None:
        return None
    readable = prompt.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")
    if readable != prompt:
        warnings.warn(f"{what} is not UTF-8: its undecodable bytes are read as U+FFFD: {readable!r}", stacklevel=2)
    return readable


def pair_prompts(prompts: str | Sequence[str], keyframes: int) -> list[str]:
    """One prompt per consecutive pair: a single prompt is used for every pair."""
    if keyframes < 2:
        raise UsageError(f"interpolation needs at least two key frames, got {keyframes}")
    if isinstance(prompts, str):
        return [prompts] * (keyframes - 1)
    if len(prompts) != keyframes - 1:
        raise UsageError(
            f"{keyframes} key frames make {keyframes - 1} clips: give one prompt per clip, not {len(prompts)}"
        )
    return list(prompts)
