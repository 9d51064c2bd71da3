"""The jobs service without HTTP: the store, the workers, the webhooks, the metrics and the janitor that removes
jobs past `--keep`, started and stopped together; what each route asks of them (dcrt.serving.jobs.app only
translates)."""

from __future__ import annotations

import functools
import json
import math
import secrets
import threading
from collections.abc import Callable
from dataclasses import replace

from pydantic import ValidationError

from dcrt.director.llm import LLMRequest
from dcrt.director.score import Scores
from dcrt.errors import UsageError
from dcrt.loading import BackendRequest
from dcrt.serving.jobs.checks import ServedModel, check_image, check_limits, plan_job
from dcrt.serving.jobs.director import JobDirector
from dcrt.serving.jobs.metrics import JobMetrics
from dcrt.serving.jobs.schema import JobRequest, JobStatus, one_line
from dcrt.serving.jobs.settings import ApiSettings
from dcrt.serving.jobs.store import JobRecord, JobStore
from dcrt.serving.jobs.webhooks import WebhookSender
from dcrt.serving.jobs.workers import Engine, InProcessEngine, TritonEngine, WorkerPool

JANITOR_PERIOD_S = 60.0
ID_BYTES = 16  # 128 random bits: ids cannot be guessed


class JobNotFound(UsageError):
    """No job has that id (HTTP 404)."""


class ResultNotReady(UsageError):
    """The job has no video (yet): it waits, runs, failed or was cancelled (HTTP 409)."""


def engines(model: BackendRequest, triton: str | None, log: Callable[[str], None]) -> Callable[[int], Engine]:
    """What worker i runs its jobs on: the `dcrt serve` endpoint `triton`, or a backend of its own opened here
    (`dcrt.open_backend`: --backend, --device, --memory as the command line gives them; `--device cuda` puts the
    workers on the GPUs in turn)."""
    if triton is not None:
        return lambda index: TritonEngine(triton)

    def open_engine(index: int) -> Engine:
        import torch

        from dcrt.loading import open_backend

        device = worker_device(model.device, index, torch.cuda.device_count())
        preset = model.preset_config()
        return InProcessEngine(open_backend(replace(model, device=device), preset.height, preset.width, log=log))

    return open_engine


def directors(
    model: BackendRequest, llm: LLMRequest | None, log: Callable[[str], None]
) -> Callable[[int], JobDirector]:
    """Worker i's director: the checkpoint's CLIP on the worker's device (the GPUs in turn, as `engines`)."""

    def open_director(index: int) -> JobDirector:
        import torch

        device = worker_device(model.device, index, torch.cuda.device_count())
        return JobDirector(replace(model, device=device), llm, log)

    return open_director


def worker_device(device: str | None, index: int, gpus: int) -> str | None:
    """Worker `index`'s device: `cuda` spreads the workers over the `gpus` GPUs (worker i on GPU i mod gpus); any
    other choice (none, cpu, cuda:N) is every worker's."""
    return f"cuda:{index % gpus}" if device == "cuda" and gpus > 1 else device


class JobService:
    def __init__(
        self,
        settings: ApiSettings,
        served: ServedModel,
        open_engine: Callable[[int], Engine],
        open_director: Callable[[int], JobDirector],
        log: Callable[[str], None],
    ):
        self.settings, self.served, self.log = settings, served, log
        self.store = JobStore(settings.state)
        for line in self.store.recover():
            log(line)
        self.metrics = JobMetrics(self.store)
        self.webhooks = WebhookSender(
            settings.webhook_allow, settings.webhook_secret, settings.webhook_retries, settings.webhook_backoff, log
        )
        self.workers = WorkerPool(
            self.store, served, open_engine, open_director, settings.workers, self.metrics, self._finished, log
        )
        self.stopping = threading.Event()
        self._janitor = threading.Thread(target=self._expire, name="dcrt-janitor", daemon=True)

    def start(self) -> None:
        for job in self.store.pending_webhooks():  # due when the service stopped
            self._finished(job)
        self.workers.start()
        self._janitor.start()

    def stop(self) -> None:
        self.stopping.set()
        self.workers.stop()
        self.webhooks.stop()
        self._janitor.join(5.0)
        self.store.close()

    def _expire(self) -> None:
        period = min(JANITOR_PERIOD_S, self.settings.keep_s / 4)
        while True:
            removed = self.store.expire(self.settings.keep_s)
            if removed:
                self.log(f"removed {removed} job(s) finished over {self.settings.keep:g} h ago")
            if self.stopping.wait(period):
                return

    def _finished(self, job: JobRecord) -> None:
        if job.webhook_state == "pending":
            done = functools.partial(self.store.webhook_sent, job.id)
            self.webhooks.send(job.webhook, self.status(job).model_dump(mode="json"), done)

    def submit(self, request_text: str, images: list[bytes]) -> JobStatus:
        """A job checked as the command line checks its options (plus the limits), then stored and queued.
        Raises UsageError (one line) or dcrt.serving.jobs.store.QueueFull."""
        try:
            request = JobRequest.model_validate_json(request_text or "{}")
        except ValidationError as exc:
            raise UsageError(one_line(exc.errors(), root="request")) from None
        plan = plan_job(request, self.served, len(images))
        check_limits(plan, self.settings)
        if request.webhook is not None:
            self.webhooks.check(request.webhook)
        for i, data in enumerate(images):
            check_image(data, f"image {i + 1}", self.settings.max_pixels)
        job = self.store.submit(
            secrets.token_urlsafe(ID_BYTES), request.mode, self.served.preset.name,
            request.model_dump_json(), images, request.webhook, self.settings.max_queue, plan.prompt,
        )  # fmt: skip
        self.workers.wake()
        return self.status(job)

    def job(self, job_id: str) -> JobRecord:
        job = self.store.get(job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id!r} (never submitted, or removed after --keep hours)")
        return job

    def status(self, job: JobRecord) -> JobStatus:
        return JobStatus(
            id=job.id, status=job.status, mode=job.mode, preset=job.preset,
            created_at=job.created_at, started_at=job.started_at, finished_at=job.finished_at,
            queue_position=self.store.queue_position(job), step=job.step, steps=job.steps, stage=job.stage,
            attempts=job.attempts, error=job.error, prompt=job.prompt,
            result_url=f"/v1/jobs/{job.id}/result" if job.status == "succeeded" else None,
            scores=_scores(job),
        )  # fmt: skip

    def cancel(self, job_id: str) -> JobStatus:
        job, cancelled_now = self.store.cancel(job_id)
        if job is None:
            return self.status(self.job(job_id))  # raises JobNotFound
        if job.status == "running":
            self.workers.cancel(job_id)
        elif cancelled_now:  # before it ran: it is over
            self.store.drop_inputs(job)
            self._finished(job)
        return self.status(job)

    def result(self, job_id: str):
        """(path, format) of a job's video. Raises JobNotFound or ResultNotReady."""
        job = self._succeeded(job_id)
        return self.store.result_path(job), job.result.rpartition(".")[2]

    def scores(self, job_id: str) -> Scores:
        """A job's scores. Raises JobNotFound, or ResultNotReady (not succeeded yet, or never asked for)."""
        job = self._succeeded(job_id)
        if job.scores is None:
            raise ResultNotReady(f'job {job_id} did not ask for scores: submit it with "score": true')
        return _scores(job)

    def _succeeded(self, job_id: str) -> JobRecord:
        job = self.job(job_id)
        if job.status != "succeeded":
            reason = f": {job.error}" if job.error else ""
            raise ResultNotReady(f"job {job_id} is {job.status}{reason}; its video comes once it has succeeded")
        return job

    def retry_after_s(self) -> int:
        """Seconds until a place in the queue is likely free: one job's mean run time over the workers."""
        mean = self.store.mean_run_s() or 10.0
        return max(1, math.ceil(mean / self.settings.workers))


def _scores(job: JobRecord) -> Scores | None:
    """A job's stored scores (the JSON its worker wrote), or None."""
    return Scores(**json.loads(job.scores)) if job.scores else None
