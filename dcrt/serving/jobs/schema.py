"""The jobs API's bodies (pydantic: they make the OpenAPI spec): a job's request, its status, the error line.

A job request's sampling fields are generated from the library's own request types (`SamplingRequest`, and
`SVDRequest`'s fields that DynamiCrafter's lacks), so each option is declared once, with its help; their values are
checked by the same functions the command line calls (dcrt.serving.jobs.checks)."""

from __future__ import annotations

import typing
from dataclasses import fields
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from dcrt.director.score import Scores
from dcrt.families.dynamicrafter.config import MODES
from dcrt.families.dynamicrafter.options import SamplingRequest
from dcrt.families.svd.options import SVD_ONLY_NAMES, SVDRequest
from dcrt.video import DEFAULT_QUALITY

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
FINAL = ("succeeded", "failed", "cancelled")
# One file a client can download: a folder of png frames is not one.
JOB_FORMATS = ("mp4", "gif", "webp")
MAX_PROMPT_CHARS = 2000
Status = Literal[STATUSES]


class JobOptions(BaseModel):
    """What a job asks for beyond its images (the multipart field `request`, a JSON object)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    mode: Literal[MODES] = Field("animate", description=", ".join(MODES))
    preset: str | None = Field(
        None,
        description="the preset the job needs: the one the service runs (its workers hold one model load each: "
        "another is refused with 422)",
    )
    prompt: str | None = Field(
        None,
        max_length=MAX_PROMPT_CHARS,
        description="what should happen in the video (SVD presets take none); left out, a DynamiCrafter job's prompt "
        "is chosen from its image(s) as with auto_prompt",
    )
    auto_prompt: bool = Field(
        False,
        description="choose the prompt from the image(s), as `dcrt describe` ranks them first (or the service's chat "
        "model proposes them): the status's `prompt` says which; excludes `prompt`",
    )
    memory: str | None = Field(
        None, description="the memory profile the job needs: the service's (another is refused with 422)"
    )
    format: Literal[JOB_FORMATS] = Field("mp4", description="the video's format")
    fps: int | None = Field(None, description="frames per second of the video (SVD: also its conditioning)")
    quality: int = Field(DEFAULT_QUALITY, description="x264 CRF for mp4, 0-51, lower is better")
    score: bool = Field(
        False,
        description="score the video (`dcrt score`'s metrics, docs/metrics.md): in the status's `scores` and at "
        "/v1/jobs/{id}/result?scores=true",
    )
    webhook: str | None = Field(
        None, max_length=2000, description="http(s) URL POSTed the job's final status (a host on --webhook-allow)"
    )


def _optional(owner: type, name: str) -> tuple[object, object]:
    """A request dataclass field as a pydantic field: its type (all are `X | None`), None, and its help."""
    spec = next(f for f in fields(owner) if f.name == name)
    return (typing.get_type_hints(owner)[name], Field(None, description=spec.metadata.get("help")))


SAMPLING_FIELDS = tuple(f.name for f in fields(SamplingRequest))
JobRequest = create_model(
    "JobRequest",
    __base__=JobOptions,
    __doc__=JobOptions.__doc__ + " Sampling fields left out (null) take the preset's default.",
    **{name: _optional(SamplingRequest, name) for name in SAMPLING_FIELDS},
    **{name: _optional(SVDRequest, name) for name in SVD_ONLY_NAMES},
)


def one_line(errors: list[dict], root: str | None = None) -> str:
    """pydantic's (or FastAPI's) validation errors as one line: the first, where it is (under `root`), and how many
    more."""
    first = errors[0]
    where = ".".join(str(part) for part in [*([root] if root else []), *first.get("loc", ())]) or "request"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first.get('msg', 'invalid')}{more}"


class JobStatus(BaseModel):
    id: str
    status: Status
    mode: str
    preset: str
    created_at: float = Field(description="seconds since the epoch")
    started_at: float | None = None
    finished_at: float | None = None
    queue_position: int | None = Field(None, description="1: next to run; null once it runs")
    step: int = Field(0, description="denoising steps done")
    steps: int | None = Field(None, description="denoising steps of the run (of every clip together)")
    stage: str = Field(description="waiting, loading, describing, denoising, writing, scoring, done")
    attempts: int = Field(0, description="times a worker started it (2: the service stopped while it ran)")
    error: str | None = Field(None, description="why it failed or was cancelled, one line")
    prompt: str | None = Field(
        None, description="the prompt the video follows: the job's own, or the one chosen for it once it is"
    )
    result_url: str | None = Field(None, description="where the video is, once it succeeded")
    scores: Scores | None = Field(None, description="the video's metrics (docs/metrics.md), when the job asked")


class JobList(BaseModel):
    jobs: list[JobStatus]


class ErrorBody(BaseModel):
    error: str = Field(description="what was wrong, one line")


class Health(BaseModel):
    status: Literal["ok"]
    workers: int
    ready: int = Field(description="workers whose model is loaded")
    queued: int
    running: int
