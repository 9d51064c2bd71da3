"""What a worker asks of the director (dcrt.director) for a job: its prompt, chosen from its images when the job
gives none (as `dcrt describe` ranks the prompt bank, or as the service's chat model proposes), and its video's
scores (`dcrt score`'s metrics). Both read the checkpoint's CLIP, loaded at a worker's first need and then kept
beside its model, as `dcrt animate --score` keeps it over a batch; the bank's text embeddings are so computed once
per worker, not once per job (TextMemo)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from dcrt.director.llm import LLMRequest
from dcrt.loading import BackendRequest
from dcrt.serving.jobs.checks import JobPlan

if TYPE_CHECKING:
    from dcrt.director.clip_space import Embedder
    from dcrt.director.score import Scores


def cannot_describe(model: BackendRequest, llm: LLMRequest | None) -> str | None:
    """Why a service of `model` cannot choose prompts (None: it can): with no chat model, the bank is ranked by the
    checkpoint's CLIP, which a `--triton` service may not have here."""
    if llm is not None or model.requested_weights() is not None:
        return None
    return f"this service has no checkpoint of preset {model.preset} here to choose a prompt with (--ckpt or --llm)"


@dataclass
class JobDirector:
    """One worker's director: `model` is the service's preset and checkpoint on this worker's device; `llm` the
    service's chat model (resolved), which proposes prompts instead of the bank."""

    model: BackendRequest
    llm: LLMRequest | None = None
    log: Callable[[str], None] = lambda line: None
    _clip: tuple[Embedder | None, str] | None = field(default=None, init=False, repr=False)

    def clip(self) -> tuple[Embedder | None, str]:
        """The checkpoint's CLIP space (loaded once), or None and why there is none (no checkpoint here, or a
        family without a text tower: then only the pixel metrics are scored)."""
        if self._clip is None:
            from dcrt.director.clip_space import TextMemo
            from dcrt.director.score import open_embedder

            embedder, why = open_embedder(self.model.preset_config(), self.model.requested_weights(), self.model.device)
            self._clip = (TextMemo(embedder) if embedder is not None else None, why)
        return self._clip

    def prompted(self, plan: JobPlan, images: list[Path], name: str) -> JobPlan:
        """`plan` with the prompt chosen from `images` (more than two key frames: one per consecutive pair)."""
        from dcrt.batch import Job
        from dcrt.director.describe import choose_prompts
        from dcrt.images import open_image

        embedder = self.clip()[0] if self.llm is None else None  # a chat model needs no CLIP (unless it fails)
        pictures = [[open_image(path) for path in images]]
        [job] = choose_prompts([Job(images, None, name)], pictures, self.model, self.log, self.llm, embedder)
        pairs = tuple(job.pair_prompts) if job.pair_prompts else None
        return replace(plan, prompt=job.prompt, pair_prompts=pairs)

    def score(self, video: Path, images: list[Path], prompt: str | None) -> Scores:
        from dcrt.director.score import score_video

        embedder, why = self.clip()
        return score_video(video, images, prompt, embedder, why)
