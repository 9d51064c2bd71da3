"""The offline describer: a curated, versioned bank of subjects, motions and scenes (prompt_bank.json, package
data), and its ranking for an image in a CLIP space (dcrt.director.clip_space).

A candidate prompt is `<motion> <scene>`, its motion taken from one subject's list. Its score is the mean of three
cosine similarities to the image: of the subject ("a photo of <subject>"), of the motion phrase and of the scene's
label, each averaged over the images given (interpolation's two key frames). So every bank text is embedded once,
and all |motions| x |scenes| candidates are scored by indexing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dcrt.errors import UsageError

if TYPE_CHECKING:
    from dcrt.director.clip_space import Embedder

BANK_FILE = "prompt_bank.json"
SUBJECT_TEMPLATE = "a photo of {}"


@dataclass(frozen=True)
class Subject:
    name: str
    motions: tuple[str, ...]


@dataclass(frozen=True)
class Scene:
    name: str  # the phrase that ends a prompt: "at sunset"
    label: str  # what CLIP matches against the image: "a photo taken at sunset"


@dataclass(frozen=True)
class RankedPrompt:
    """One proposed prompt. `score`: the bank's mean cosine similarity in [-1, 1] (None for a chat model's answer,
    which ranks without scores); `source`: "bank v<version>" or "llm <model>"."""

    prompt: str
    score: float | None
    source: str
    subject: str | None = None
    motion: str | None = None
    scene: str | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in vars(self).items() if v is not None}


@dataclass(frozen=True)
class PromptBank:
    version: int
    subjects: tuple[Subject, ...]
    scenes: tuple[Scene, ...]

    @property
    def source(self) -> str:
        return f"bank v{self.version}"

    def texts(self) -> list[str]:
        """Every text CLIP embeds, in this order: subjects (templated), motions, scene labels."""
        motions = [m for s in self.subjects for m in s.motions]
        return [SUBJECT_TEMPLATE.format(s.name) for s in self.subjects] + motions + [c.label for c in self.scenes]

    def candidates(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Index arrays into `texts()` (subject, motion, scene) of every candidate, motion-major."""
        n_subjects, n_scenes = len(self.subjects), len(self.scenes)
        owner = np.array([i for i, s in enumerate(self.subjects) for _ in s.motions])
        motion = n_subjects + np.arange(len(owner))
        scene = n_subjects + len(owner) + np.arange(n_scenes)
        return np.repeat(owner, n_scenes), np.repeat(motion, n_scenes), np.tile(scene, len(owner))

    def prompt(self, motion: str, scene: Scene) -> str:
        return f"{motion} {scene.name}"


def load_bank(path: str | Path | None = None) -> PromptBank:
    """The bank at `path` (a JSON file of prompt_bank.json's shape), else the one shipped with dcrt."""
    try:
        if path is None:
            text = resources.files("dcrt.director").joinpath(BANK_FILE).read_text(encoding="utf-8")
        else:
            text = Path(path).read_text(encoding="utf-8")
        data = json.loads(text)
        subjects = tuple(Subject(s["name"], tuple(s["motions"])) for s in data["subjects"])
        scenes = tuple(Scene(c["name"], c["label"]) for c in data["scenes"])
        bank = PromptBank(int(data["version"]), subjects, scenes)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"cannot read the prompt bank {path or BANK_FILE}: {type(exc).__name__}: {exc}") from None
    _check(bank, path or BANK_FILE)
    return bank


def _check(bank: PromptBank, where: str | Path) -> None:
    motions = [m for s in bank.subjects for m in s.motions]
    if not motions or not bank.scenes:
        raise UsageError(f"prompt bank {where} needs at least one motion and one scene")
    texts = [s.name for s in bank.subjects] + motions + [c.name for c in bank.scenes] + [c.label for c in bank.scenes]
    if not all(isinstance(t, str) and t.strip() for t in texts):
        raise UsageError(f"prompt bank {where} has an empty or non-text entry")
    repeated = sorted({m for m in motions if motions.count(m) > 1})
    if repeated:
        raise UsageError(f"prompt bank {where} lists motions twice: {', '.join(repeated[:3])}")


def rank_prompts(embedder: Embedder, frames: np.ndarray, bank: PromptBank, top: int = 5) -> list[RankedPrompt]:
    """The `top` best candidates for the images `frames` (uint8 [N, H, W, 3]; all N are seen), best first; ties
    keep the bank's order."""
    images = embedder.embed_images(frames)  # [N, D]
    texts = embedder.embed_texts(bank.texts())  # [T, D]
    similarity = (images @ texts.T).mean(axis=0)  # [T]: each text's cosine, averaged over the images
    subject, motion, scene = bank.candidates()
    scores = (similarity[subject] + similarity[motion] + similarity[scene]) / 3.0
    order = np.argsort(-scores, kind="stable")[:top]
    motions = [m for s in bank.subjects for m in s.motions]
    n_subjects, n_motions = len(bank.subjects), len(motions)
    ranked = []
    for i in order:
        chosen_scene = bank.scenes[scene[i] - n_subjects - n_motions]
        chosen_motion = motions[motion[i] - n_subjects]
        ranked.append(
            RankedPrompt(
                prompt=bank.prompt(chosen_motion, chosen_scene),
                score=float(scores[i]),
                source=bank.source,
                subject=bank.subjects[subject[i]].name,
                motion=chosen_motion,
                scene=chosen_scene.name,
            )
        )
    return ranked
