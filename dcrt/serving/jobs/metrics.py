"""GET /metrics: Prometheus' text format from prometheus-client, in a registry of the service's own (two services in
one process, as the tests run them, do not share counts). The queue length and jobs by state are read from the
store when scraped, so they are right after a restart; the histograms count what this process ran."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from dcrt.serving.jobs.schema import STATUSES
from dcrt.serving.jobs.store import JobStore

# A tiny CPU job takes seconds, a 1024 video on a GPU minutes: buckets over both.
JOB_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 3600)
STEP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)


class _StoreCollector:
    def __init__(self, store: JobStore):
        self.store = store

    def collect(self):
        counts = self.store.counts()
        queue = GaugeMetricFamily("dcrt_jobs_queue_length", "jobs waiting for a worker")
        queue.add_metric([], counts.get("queued", 0))
        yield queue
        jobs = GaugeMetricFamily("dcrt_jobs", "jobs in the store, by state", labels=["state"])
        for status in STATUSES:
            jobs.add_metric([status], counts.get(status, 0))
        yield jobs


class JobMetrics:
    def __init__(self, store: JobStore):
        self.registry = CollectorRegistry()
        self.registry.register(_StoreCollector(store))
        self.step_seconds = Histogram(
            "dcrt_job_step_seconds", "seconds per denoising step (the first, with the conditioning, not counted)",
            buckets=STEP_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.job_seconds = Histogram(
            "dcrt_job_seconds", "seconds a worker spent on a job, by how it ended", ["status"],
            buckets=JOB_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.queue_wait_seconds = Histogram(
            "dcrt_job_queue_wait_seconds", "seconds from submission to a worker taking the job",
            buckets=JOB_BUCKETS, registry=self.registry,
        )  # fmt: skip

    def render(self) -> bytes:
        return generate_latest(self.registry)
