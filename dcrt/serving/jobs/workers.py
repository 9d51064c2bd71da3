"""The workers: `--workers N` threads, each with an engine of its own (one model load each), taking the oldest queued
job from the store, running it and recording its end.

Progress comes from the pipeline's `on_step(step, total)` callback, called after each denoising step; the same
callback stops a run: raising from it unwinds the sampler (dcrt.models.placement puts offloaded networks back on
the way out), and the engine then frees what the run held on the device (`release`). A cancel so takes effect at the
next step; a shutdown puts the job back in the queue, uncounted.

A job that leaves its prompt out has it chosen first (stage `describing`), and one that asks for scores is scored
once its video is written (stage `scoring`), by the worker's director (dcrt.serving.jobs.director).
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from dcrt.errors import DcrtError
from dcrt.families.common import StepCallback
from dcrt.serving.jobs.checks import JobPlan, ServedModel, plan_job
from dcrt.serving.jobs.director import JobDirector
from dcrt.serving.jobs.metrics import JobMetrics
from dcrt.serving.jobs.schema import JobRequest
from dcrt.serving.jobs.store import JobRecord, JobStore
from dcrt.serving.service import Cancelled

IDLE_WAIT_S = 0.5  # a worker looks at the queue this often even when no one wakes it


class Engine(Protocol):
    def run(self, plan: JobPlan, images: list[Path], target: Path, on_step: StepCallback) -> None:
        """Write the video of `plan` from `images` to `target`, calling `on_step` after each denoising step."""

    def release(self) -> None:
        """Free what an unfinished run left on the device."""


class InProcessEngine:
    """A backend opened in this process (`dcrt.open_backend`), run through dcrt.api.save_video."""

    def __init__(self, backend):
        self.backend = backend

    def run(self, plan: JobPlan, images: list[Path], target: Path, on_step: StepCallback) -> None:
        from dcrt.api import save_video
        from dcrt.images import open_image

        pictures = [open_image(path) for path in images]
        save_video(
            self.backend, plan.mode, pictures, plan.prompt, target, pair_prompts=plan.pair_prompts, on_step=on_step,
            fps=plan.fps, quality=plan.quality, format=plan.format, **plan.sampling,
        )  # fmt: skip

    def release(self) -> None:
        import torch

        gc.collect()  # the unwound run's tensors, held by reference cycles through its frames
        if torch.cuda.is_initialized():
            torch.cuda.empty_cache()


class TritonEngine:
    """Jobs sent to a `dcrt serve` endpoint (dcrt.serving.client): the model runs there, on its GPUs and hosts.
    Triton answers a request once, with every frame: progress jumps from step 0 to N when the answer comes, and a
    cancel takes effect then (the answer is dropped); the request itself is not stopped on the server."""

    def __init__(self, url: str):
        self.url = url

    def run(self, plan: JobPlan, images: list[Path], target: Path, on_step: StepCallback) -> None:
        from dcrt.families.dynamicrafter.options import SamplingRequest
        from dcrt.serving.client import generate_remote
        from dcrt.video import write_video

        sampling = SamplingRequest(**plan.sampling)
        data = [path.read_bytes() for path in images]
        frames = generate_remote(self.url, data, plan.prompt or "", plan.mode, sampling)["FRAMES"]
        on_step(plan.steps, plan.steps)
        write_video(frames, target, plan.format, fps=plan.fps, quality=plan.quality)

    def release(self) -> None:
        pass  # nothing of the run is held here


class _Stopping(Exception):
    """The service is shutting down: the job goes back in the queue."""


class WorkerPool:
    def __init__(
        self,
        store: JobStore,
        served: ServedModel,
        open_engine: Callable[[int], Engine],  # worker index -> its engine
        open_director: Callable[[int], JobDirector],  # worker index -> its director (the prompt, the scores)
        count: int,
        metrics: JobMetrics,
        on_finish: Callable[[JobRecord], None],
        log: Callable[[str], None],
    ):
        self.store, self.served, self.open_engine, self.count = store, served, open_engine, count
        self.open_director = open_director
        self.metrics, self.on_finish, self.log = metrics, on_finish, log
        self.ready = 0
        self._wake = threading.Condition()
        self._stopping = threading.Event()
        self._cancels: dict[str, threading.Event] = {}
        self._threads = [
            threading.Thread(target=self._work, args=(i,), name=f"dcrt-worker-{i}", daemon=True) for i in range(count)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def wake(self) -> None:
        with self._wake:
            self._wake.notify_all()

    def cancel(self, job_id: str) -> None:
        """Stop a running job at its next step (the store has marked it)."""
        event = self._cancels.get(job_id)
        if event is not None:
            event.set()

    def stop(self, timeout_s: float = 60.0) -> None:
        """Running jobs go back in the queue at their next step; the workers end."""
        self._stopping.set()
        self.wake()
        for thread in self._threads:
            thread.join(timeout_s)

    def _work(self, index: int) -> None:
        try:
            engine = self.open_engine(index)
        except Exception as exc:  # the service stays up to say so (/healthz: fewer ready workers)
            self.log(f"worker {index} cannot load the model: {type(exc).__name__}: {exc}")
            return
        director = self.open_director(index)
        with self._wake:
            self.ready += 1
        while not self._stopping.is_set():
            job = self.store.claim()
            if job is None:
                with self._wake:
                    self._wake.wait(IDLE_WAIT_S)
                continue
            self.metrics.queue_wait_seconds.observe(job.started_at - job.created_at)
            self._run(engine, director, job)

    def _run(self, engine: Engine, director: JobDirector, job: JobRecord) -> None:
        cancel = self._cancels[job.id] = threading.Event()
        if self.store.get(job.id).cancel_requested:  # cancelled between the claim and the line above
            cancel.set()
        started = last = time.monotonic()

        def go_on(at: str) -> None:
            """Stops the job here when it was cancelled or the service is stopping."""
            if cancel.is_set():
                raise Cancelled(f"cancelled {at}")
            if self._stopping.is_set():
                raise _Stopping

        def on_step(step: int, total: int) -> None:
            nonlocal last
            now = time.monotonic()
            if step > 1:
                self.metrics.step_seconds.observe(now - last)
            last = now
            self.store.progress(job.id, step, total, "denoising" if step < total else "writing")
            go_on(f"at step {step} of {total}")

        status, error, result, scores = "failed", None, None, None
        try:
            result, scores = self._produce(engine, director, job, on_step, go_on)
            status = "succeeded"
        except _Stopping:
            status = None
        except Cancelled as exc:
            status, error = "cancelled", str(exc)
        except DcrtError as exc:
            error = str(exc)
        except Exception as exc:  # a bug or the device failing: this job fails, the worker goes on
            error = f"internal error: {type(exc).__name__}: {exc}".splitlines()[0]
        finally:
            del self._cancels[job.id]
        if status != "succeeded":
            engine.release()
        if status is None:
            self.store.requeue(job.id)
            return
        done = self.store.finish(job.id, status, error, result, scores)
        self.metrics.job_seconds.labels(status).observe(time.monotonic() - started)
        self.store.drop_inputs(done)
        self.on_finish(done)

    def _produce(
        self,
        engine: Engine,
        director: JobDirector,
        job: JobRecord,
        on_step: StepCallback,
        go_on: Callable[[str], None],
    ) -> tuple[str, str | None]:
        """A job's video, its prompt chosen first and its scores after where it asks: (its file's name, the scores'
        JSON or None)."""
        plan = plan_job(JobRequest.model_validate_json(job.request), self.served, job.images)
        images = self.store.image_paths(job)
        if plan.auto_prompt:
            self.store.progress(job.id, 0, plan.steps, "describing")
            plan = director.prompted(plan, images, job.id)
            self.store.chose_prompt(job.id, plan.prompt)
            go_on("while its prompt was chosen")
        self.store.progress(job.id, 0, plan.steps, "denoising")
        target = self.store.folder(job.id) / f"result.{plan.format}"
        engine.run(plan, images, target, on_step)
        if not plan.score:
            return target.name, None
        self.store.progress(job.id, plan.steps, plan.steps, "scoring")
        scores = director.score(target, images, plan.prompt)
        go_on("while its video was scored")
        return target.name, scores.to_json()
