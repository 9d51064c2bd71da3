"""The job store: one SQLite database (WAL, synchronous=FULL) and a folder per job in `--state DIR`.

    DIR/jobs.sqlite3        one row per job: its request, status, progress, timings, error
    DIR/jobs/<id>/image-N   the uploaded images, written (atomically) before the row that makes the job exist
    DIR/jobs/<id>/result.F  the video, written to a temporary file and renamed (dcrt.video.write_video)
    DIR/lock                held (flock) by the one service that owns the store

A job that got its 202 is in the database, so a crash loses nothing: `recover` puts a job that was running back in
the queue once (its place kept) and fails it the second time, with the reason. Every method takes the store's lock:
workers, the janitor and the routes share one connection.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path

from dcrt.atomic import atomic_file
from dcrt.errors import UsageError

DATABASE = "jobs.sqlite3"
MAX_ATTEMPTS = 2  # a job the service died under twice is failed, not run a third time
SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- queue order
    id TEXT UNIQUE NOT NULL,
    status TEXT NOT NULL,
    mode TEXT NOT NULL,
    preset TEXT NOT NULL,
    request TEXT NOT NULL,                  -- the JobRequest's JSON
    images INTEGER NOT NULL,
    webhook TEXT,
    webhook_state TEXT,                     -- pending from the job's end until delivered, or failed every try
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    step INTEGER NOT NULL DEFAULT 0,
    steps INTEGER,
    stage TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    result TEXT,                            -- the result's file name in the job's folder
    prompt TEXT,                            -- the prompt the video follows: the request's, or the one chosen
    scores TEXT                             -- the video's Scores as JSON, when the job asked
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, seq);
"""
# Columns a store made by an earlier dcrt lacks: added when it is opened (name, type).
ADDED_COLUMNS = (("prompt", "TEXT"), ("scores", "TEXT"))


@dataclass(frozen=True)
class JobRecord:
    seq: int
    id: str
    status: str
    mode: str
    preset: str
    request: str
    images: int
    webhook: str | None
    webhook_state: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    step: int
    steps: int | None
    stage: str
    attempts: int
    cancel_requested: int
    error: str | None
    result: str | None
    prompt: str | None
    scores: str | None


COLUMNS = ", ".join(f.name for f in fields(JobRecord))
# A job that ends with a webhook to send: it stays pending until the sender says how it went, across restarts.
_WEBHOOK_PENDING = "webhook_state = CASE WHEN webhook IS NULL THEN NULL ELSE 'pending' END"


class QueueFull(Exception):
    def __init__(self, queued: int):
        super().__init__(f"the queue is full ({queued} jobs waiting): try again later")
        self.queued = queued


class JobStore:
    def __init__(self, state: Path):
        state.mkdir(parents=True, exist_ok=True)
        self.state = state
        self._lock_file = open(state / "lock", "a")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise UsageError(f"another dcrt api uses --state {state}: give this one a folder of its own") from None
        self._lock = threading.Lock()
        self._closed = False
        self._db = sqlite3.connect(state / DATABASE, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a committed job survives a power cut, not only kill -9
        self._db.executescript(SCHEMA)
        present = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
        for name, kind in ADDED_COLUMNS:
            if name not in present:
                self._db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {kind}")

    def close(self) -> None:
        with self._lock:
            self._db.close()
            self._lock_file.close()
            self._closed = True

    def folder(self, job_id: str) -> Path:
        return self.state / "jobs" / job_id

    def image_paths(self, job: JobRecord) -> list[Path]:
        return [self.folder(job.id) / f"image-{i}" for i in range(job.images)]

    def result_path(self, job: JobRecord) -> Path | None:
        return self.folder(job.id) / job.result if job.result else None

    def _rows(self, sql: str, *args) -> list[JobRecord]:
        return [JobRecord(*row) for row in self._db.execute(f"SELECT {COLUMNS} FROM jobs {sql}", args)]

    def _one(self, job_id: str) -> JobRecord | None:
        rows = self._rows("WHERE id = ?", job_id)
        return rows[0] if rows else None

    def submit(
        self,
        job_id: str,
        mode: str,
        preset: str,
        request: str,
        images: list[bytes],
        webhook: str | None,
        limit: int,
        prompt: str | None = None,
    ) -> JobRecord:
        """A new queued job: its images on disk first, then its row (the job exists once the row is committed).
        `prompt`: the one its video will follow (None: chosen when it runs, or none). Raises QueueFull when `limit`
        jobs already wait."""
        folder = self.folder(job_id)
        folder.mkdir(parents=True)
        try:
            for i, data in enumerate(images):
                with atomic_file(folder / f"image-{i}") as tmp:
                    tmp.write_bytes(data)
            with self._lock:
                queued = self._db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'queued'").fetchone()[0]
                if queued >= limit:
                    raise QueueFull(queued)
                self._db.execute(
                    "INSERT INTO jobs (id, status, mode, preset, request, images, webhook, created_at, stage, "
                    "prompt) VALUES (?, 'queued', ?, ?, ?, ?, ?, ?, 'waiting', ?)",
                    (job_id, mode, preset, request, len(images), webhook, time.time(), prompt),
                )
                return self._one(job_id)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    def claim(self) -> JobRecord | None:
        """The oldest queued job, now running (its attempt counted), or None."""
        with self._lock:
            row = self._db.execute("SELECT id FROM jobs WHERE status = 'queued' ORDER BY seq LIMIT 1").fetchone()
            if row is None:
                return None
            self._db.execute(
                "UPDATE jobs SET status = 'running', started_at = ?, attempts = attempts + 1, step = 0, "
                "stage = 'loading' WHERE id = ?",
                (time.time(), row[0]),
            )
            return self._one(row[0])

    def progress(self, job_id: str, step: int, steps: int | None, stage: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET step = ?, steps = ?, stage = ? WHERE id = ? AND status = 'running'",
                (step, steps, stage, job_id),
            )

    def chose_prompt(self, job_id: str, prompt: str) -> None:
        """The prompt chosen for a job that left it out."""
        with self._lock:
            self._db.execute("UPDATE jobs SET prompt = ? WHERE id = ? AND status = 'running'", (prompt, job_id))

    def finish(
        self,
        job_id: str,
        status: str,
        error: str | None = None,
        result: str | None = None,
        scores: str | None = None,
    ) -> JobRecord:
        """A running job's end: succeeded (with its result's file name and, when asked, its scores' JSON), failed or
        cancelled (with a line)."""
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET status = ?, error = ?, result = ?, scores = ?, finished_at = ?, stage = 'done', "
                f"{_WEBHOOK_PENDING} WHERE id = ? AND status = 'running'",
                (status, error, result, scores, time.time(), job_id),
            )
            return self._one(job_id)

    def requeue(self, job_id: str) -> None:
        """A running job the service stops under on purpose (shutdown): back in its place, the attempt uncounted."""
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET status = 'queued', attempts = attempts - 1, step = 0, steps = NULL, "
                "stage = 'waiting', started_at = NULL WHERE id = ? AND status = 'running'",
                (job_id,),
            )

    def cancel(self, job_id: str) -> tuple[JobRecord | None, bool]:
        """A queued job cancelled at once (True: by this call); a running one marked (its worker stops at the next
        step). None: no such job. A finished job is returned as it is."""
        with self._lock:
            queued = self._db.execute(
                "UPDATE jobs SET status = 'cancelled', finished_at = ?, stage = 'done', error = 'cancelled while "
                f"queued', {_WEBHOOK_PENDING} WHERE id = ? AND status = 'queued'",
                (time.time(), job_id),
            )
            self._db.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND status = 'running'", (job_id,))
            return self._one(job_id), queued.rowcount == 1

    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            return self._one(job_id)

    def listed(self, status: str | None = None, limit: int = 100) -> list[JobRecord]:
        """Newest first."""
        with self._lock:
            if status is None:
                return self._rows("ORDER BY seq DESC LIMIT ?", limit)
            return self._rows("WHERE status = ? ORDER BY seq DESC LIMIT ?", status, limit)

    def queue_position(self, job: JobRecord) -> int | None:
        """1 for the next job to run; None for one not waiting."""
        if job.status != "queued":
            return None
        with self._lock:
            ahead = self._db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND seq < ?", (job.seq,))
            return ahead.fetchone()[0] + 1

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall())

    def mean_run_s(self, last: int = 20) -> float | None:
        """The mean run time of the last `last` jobs that succeeded (Retry-After's estimate)."""
        with self._lock:
            row = self._db.execute(
                "SELECT AVG(finished_at - started_at) FROM (SELECT finished_at, started_at FROM jobs "
                "WHERE status = 'succeeded' ORDER BY seq DESC LIMIT ?)",
                (last,),
            ).fetchone()
        return row[0]

    def recover(self) -> list[str]:
        """After a crash: each job left running is queued again in its place, or failed once it has had
        MAX_ATTEMPTS (or cancelled, if that was asked). Folders without a row (a submit cut short) go. Returns one
        line per job touched."""
        lines = []
        with self._lock:
            for job in self._rows("WHERE status = 'running' ORDER BY seq"):
                at = f"step {job.step} of {job.steps}" if job.steps else job.stage
                if job.cancel_requested:
                    status, error = "cancelled", f"cancelled; the service stopped at {at}"
                elif job.attempts >= MAX_ATTEMPTS:
                    status, error = "failed", f"the service stopped while this job ran, {job.attempts} times (at {at})"
                else:
                    self._db.execute(
                        "UPDATE jobs SET status = 'queued', step = 0, steps = NULL, stage = 'waiting', "
                        "started_at = NULL WHERE id = ?",
                        (job.id,),
                    )
                    lines.append(f"job {job.id} was running when the service stopped (at {at}): queued again")
                    continue
                self._db.execute(
                    f"UPDATE jobs SET status = ?, error = ?, finished_at = ?, stage = 'done', {_WEBHOOK_PENDING} "
                    "WHERE id = ?",
                    (status, error, time.time(), job.id),
                )
                lines.append(f"job {job.id}: {error}")
            known = {row[0] for row in self._db.execute("SELECT id FROM jobs")}
        for folder in (self.state / "jobs").glob("*"):
            if folder.name not in known:
                shutil.rmtree(folder, ignore_errors=True)
        return lines

    def expire(self, keep_s: float, now: float | None = None) -> int:
        """Remove finished jobs (row, inputs, result) older than `keep_s`; returns how many."""
        before = (now or time.time()) - keep_s
        with self._lock:
            old = [row[0] for row in self._db.execute("SELECT id FROM jobs WHERE finished_at < ?", (before,))]
            self._db.executemany("DELETE FROM jobs WHERE id = ?", [(job_id,) for job_id in old])
        for job_id in old:
            shutil.rmtree(self.folder(job_id), ignore_errors=True)
        return len(old)

    def pending_webhooks(self) -> list[JobRecord]:
        """Ended jobs whose webhook has not been delivered nor given up on (a restart sends them again)."""
        with self._lock:
            return self._rows("WHERE webhook_state = 'pending' ORDER BY seq")

    def webhook_sent(self, job_id: str, delivered: bool) -> None:
        """A delivery that ends after the store closed (the service stopping) stays pending: sent at the next start."""
        with self._lock:
            if self._closed:
                return
            state = "delivered" if delivered else "failed"
            self._db.execute("UPDATE jobs SET webhook_state = ? WHERE id = ?", (state, job_id))

    def drop_inputs(self, job: JobRecord) -> None:
        """A finished job's uploaded images: no longer needed."""
        for path in self.image_paths(job):
            if path.exists():
                os.unlink(path)
