"""benchmarks/jobs_load.py's clients against a service on a loopback port: every job from concurrent clients succeeds,
once, in the order it was queued: 40 jobs from 8 clients, as the benchmark's committed run
(benchmarks/results/jobs-load-*.json). Each is the cheapest real job (one step, no guidance), a second or less on a
quiet 2-core machine."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.serving.jobs._service import QUICK

sys.path.append(str(Path(__file__).resolve().parents[3] / "benchmarks"))  # appended: nothing there shadows a package

import jobs_load  # noqa: E402

JOBS, CLIENTS = 40, 8


def test_jobs_from_concurrent_clients_all_succeed_once_in_queue_order(start_service):
    api = start_service(max_queue=JOBS)
    ended = jobs_load.run_load(api.client, JOBS, CLIENTS, QUICK, timeout_s=600)
    assert [(s["status"], s["attempts"]) for s in ended] == [("succeeded", 1)] * JOBS
    assert len({s["id"] for s in ended}) == JOBS
    runs = sorted(ended, key=lambda s: s["started_at"])
    assert all(a["finished_at"] <= b["started_at"] for a, b in zip(runs, runs[1:])), "one worker: one job at a time"
    assert [s["created_at"] for s in runs] == sorted(s["created_at"] for s in ended), "first queued, first run"
    summary = jobs_load.summarize(ended)
    assert summary["latency_s"]["p95"] >= summary["queue_wait_s"]["p95"] > 0
    assert "queue_wait_s" in jobs_load.table(summary)
