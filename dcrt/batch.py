"""The original's `prompt_dir` convention: images sorted by name, one prompt per line of a .txt file.

Image i pairs with prompt i; for interpolation images 2i and 2i+1 pair with prompt i.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dcrt.errors import UsageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class Job:
    images: list[Path]
    prompt: str
    name: str  # output file stem
    # interpolate through more than two key frames: one prompt per consecutive pair (None: `prompt` for each)
    pair_prompts: list[str] | None = None


def read_prompt_dir(directory: Path, mode: str, prompts_file: Path | None = None) -> list[Job]:
    if not directory.is_dir():
        raise UsageError(f"{directory} is not a directory")
    images = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if prompts_file is None:
        texts = sorted(directory.glob("*.txt"))
        if not texts:
            raise UsageError(f"{directory} has no .txt prompt file (one prompt per line)")
        prompts_file = texts[0]
    if not prompts_file.is_file():
        raise UsageError(f"prompt file {prompts_file} does not exist")
    prompts = [line.strip() for line in prompts_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    per_job = 2 if mode == "interpolate" else 1
    if not images:
        raise UsageError(f"{directory} has no .jpg/.jpeg/.png images")
    if len(images) != per_job * len(prompts):
        raise UsageError(
            f"{directory}: {len(images)} images but {len(prompts)} prompts in {prompts_file.name} "
            f"({mode} needs {per_job} image{'s' if per_job > 1 else ''} per prompt)"
        )
    groups = [images[i : i + per_job] for i in range(0, len(images), per_job)]
    return [Job(group, prompt, group[0].stem) for group, prompt in zip(groups, prompts)]
