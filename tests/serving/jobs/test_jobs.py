"""The jobs service end to end on a loopback port with the tiny preset: a job runs to its video with its progress,
events, listing and metrics; cancel of a queued and of a running job; a full queue; the bearer token; a signed
webhook retried until a loopback receiver takes it."""

from __future__ import annotations

import hmac
import json
import re
import threading
from contextlib import contextmanager
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from dcrt.serving.jobs.store import JobStore
from dcrt.serving.jobs.webhooks import SIGNATURE_HEADER, signature
from tests.serving.jobs._service import LONG, QUICK, TINY


def _events(client, job_id: str) -> list[dict]:
    with client.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        text = "".join(stream.iter_text())
    return [json.loads(line[len("data: ") :]) for line in text.splitlines() if line.startswith("data: ")]


def test_a_job_runs_to_its_video_with_progress_events_listing_and_metrics(start_service, tmp_path, frame_count):
    api = start_service()
    accepted = api.submit(QUICK)
    assert accepted.status_code == 202, accepted.text
    job = accepted.json()
    assert job["status"] == "queued" and job["queue_position"] == 1 and len(job["id"]) >= 22

    events = _events(api.client, job["id"])  # streams until the job ends
    order = ["queued", "running", "succeeded"]
    seen = [order.index(e["status"]) for e in events]
    assert seen == sorted(seen) and events[-1]["status"] == "succeeded", events

    done = api.client.get(f"/v1/jobs/{job['id']}").json()
    assert (done["step"], done["steps"], done["stage"], done["attempts"]) == (1, 1, "done", 1)
    assert done["started_at"] >= done["created_at"] and done["finished_at"] >= done["started_at"]
    video = api.client.get(done["result_url"])
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    (tmp_path / "video.mp4").write_bytes(video.content)
    assert frame_count(str(tmp_path / "video.mp4")) == 16

    listed = {status: [j["id"] for j in api.client.get("/v1/jobs", params={"status": status}).json()["jobs"]]
              for status in ("succeeded", "queued")}  # fmt: skip
    assert listed == {"succeeded": [job["id"]], "queued": []}
    metrics = api.client.get("/metrics").text
    assert re.search(r'^dcrt_jobs\{state="succeeded"\} 1\.0$', metrics, re.M)
    assert re.search(r'^dcrt_job_seconds_count\{status="succeeded"\} 1\.0$', metrics, re.M)
    assert re.search(r"^dcrt_job_queue_wait_seconds_count 1\.0$", metrics, re.M)
    assert re.search(r"^dcrt_jobs_queue_length 0\.0$", metrics, re.M)
    assert not list((tmp_path / "state" / "jobs" / job["id"]).glob("image-*")), "inputs are dropped once it ends"


def test_cancel_a_queued_and_a_running_job_and_a_full_queue(start_service):
    api = start_service(max_queue=1)
    running = api.submit(LONG).json()["id"]
    queued = api.submit(QUICK).json()["id"]
    api.wait(running, lambda s: s["status"] == "running" and s["step"] >= 1)

    full = api.submit(QUICK)
    assert full.status_code == 429 and int(full.headers["retry-after"]) >= 1
    assert "\n" not in full.json()["error"] and "queue is full" in full.json()["error"]

    cancelled = api.client.post(f"/v1/jobs/{queued}/cancel").json()
    assert (cancelled["status"], cancelled["error"]) == ("cancelled", "cancelled while queued")
    not_ready = api.client.get(f"/v1/jobs/{queued}/result")
    assert not_ready.status_code == 409 and "cancelled" in not_ready.json()["error"]

    asked = api.client.post(f"/v1/jobs/{running}/cancel").json()
    assert asked["status"] == "running"  # it stops at its next step
    ended = api.finished(running)
    step = int(re.fullmatch(r"cancelled at step (\d+) of 200", ended["error"]).group(1))
    assert ended["status"] == "cancelled" and step <= asked["step"] + 2

    # The worker goes on after a cancelled run.
    after = api.submit(QUICK).json()["id"]
    assert api.finished(after)["status"] == "succeeded"
    assert api.client.get("/v1/jobs/no-such-job").status_code == 404


def test_a_token_protected_service_refuses_requests_without_it(start_service):
    api = start_service(token="s3cret-token")
    for path in ("/v1/jobs", "/v1/jobs/x", "/metrics"):
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            refused = api.client.get(path, headers=headers)
            assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer", path
            assert "s3cret" not in refused.text and "\n" not in refused.json()["error"]
    assert api.submit(QUICK).status_code == 401
    assert api.client.get("/healthz").status_code == 200  # liveness stays open for load balancers
    allowed = {"Authorization": "Bearer s3cret-token"}
    assert api.client.get("/v1/jobs", headers=allowed).json() == {"jobs": []}
    assert api.client.get("/metrics", headers=allowed).status_code == 200


@contextmanager
def receiver(failures: int, wanted: int):
    """A loopback webhook receiver answering 500 to the first `failures` deliveries, 204 after: (its URL, the
    deliveries as (headers, body), an event set once `wanted` have come)."""
    got: list[tuple[dict, bytes]] = []
    arrived = threading.Event()

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):
            got.append((dict(self.headers), self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(500 if len(got) <= failures else 204)
            self.end_headers()
            if len(got) == wanted:
                arrived.set()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook", got, arrived
    finally:
        server.shutdown()


def test_a_webhook_is_signed_retried_and_only_sent_to_allowed_hosts(start_service):
    secret = "hook-key"
    api = start_service(webhook_allow=["127.0.0.1"], webhook_secret=secret, webhook_retries=3, webhook_backoff=0.05)
    refused = api.submit(QUICK | {"webhook": "http://example.com/hook"})
    assert refused.status_code == 422 and "not on this service's --webhook-allow" in refused.json()["error"]
    with receiver(failures=1, wanted=2) as (url, got, arrived):
        job = api.submit(QUICK | {"webhook": url}).json()["id"]
        assert arrived.wait(300), "the webhook never arrived twice"
    for headers, body in got:
        assert hmac.compare_digest(headers[SIGNATURE_HEADER], signature(secret, body))
        assert headers[SIGNATURE_HEADER] != signature("another key", body)
        sent = json.loads(body)
        assert (sent["id"], sent["status"], sent["result_url"]) == (job, "succeeded", f"/v1/jobs/{job}/result")
    assert any("try 1 of 4 failed" in line for line in api.log)
    api.wait(job, lambda s: api.service.store.get(job).webhook_state == "delivered", timeout_s=60)


def test_a_webhook_due_when_the_service_stopped_is_sent_when_it_starts(start_service, tmp_path):
    store = JobStore(tmp_path / "state")
    with receiver(failures=0, wanted=1) as (url, got, arrived):
        store.submit("job-a", "animate", "tiny", "{}", [b"image"], url, limit=10)
        store.claim()
        assert store.finish("job-a", "failed", error="the device failed").webhook_state == "pending"
        store.close()  # the service dies before the delivery
        api = start_service(state=tmp_path / "state", webhook_allow=["127.0.0.1"], webhook_secret="k")
        assert arrived.wait(60), "the due webhook was not sent"
    sent = json.loads(got[0][1])
    assert (sent["id"], sent["status"], sent["error"]) == ("job-a", "failed", "the device failed")
    api.wait("job-a", lambda s: api.service.store.get("job-a").webhook_state == "delivered", timeout_s=60)


def _live_tensors() -> int:
    import gc

    import torch

    gc.collect()
    return sum(1 for thing in gc.get_objects() if issubclass(type(thing), torch.Tensor))  # type(): no lazy attributes


def test_a_cancelled_run_leaves_no_tensor_behind(start_service):
    """What a run held is freed when a cancel unwinds it: on a GPU these tensors are its device memory. The first
    run fills the caches of its step count (its schedule); the second must end with as many tensors alive."""
    api = start_service()
    counts = []
    for _ in range(2):
        job = api.submit(LONG).json()["id"]
        api.wait(job, lambda s: s["step"] >= 2)
        api.client.post(f"/v1/jobs/{job}/cancel")
        assert api.finished(job)["status"] == "cancelled"
        counts.append(_live_tensors())
    assert counts[1] == counts[0]


def test_a_cancelled_run_empties_the_device_cache(start_service, monkeypatch):
    """The wiring of what frees device memory after a cancel, on the CPU: with CUDA (simulated) initialized, the
    worker's release calls torch.cuda.empty_cache once the unwound run is collected. The GPU test below measures it."""
    import torch

    emptied = []
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    api = start_service()
    job = api.submit(LONG).json()["id"]
    api.wait(job, lambda s: s["step"] >= 1)
    api.client.post(f"/v1/jobs/{job}/cancel")
    assert api.finished(job)["status"] == "cancelled" and len(emptied) == 1


@pytest.mark.gpu
def test_a_cancelled_run_on_the_gpu_gives_its_device_memory_back(start_service):
    """On a GPU: after a cancelled run, allocated device memory is what it was after the one before (the first
    fills the caches of its schedule), below the run's peak, and the cache returned what the run reserved."""
    import torch

    from dcrt.loading import open_backend
    from dcrt.serving.jobs.workers import InProcessEngine

    api = start_service(engine=InProcessEngine(open_backend(replace(TINY, device="cuda"))))
    allocated, reserved = [], []
    for _ in range(2):
        torch.cuda.reset_peak_memory_stats()
        job = api.submit(LONG).json()["id"]
        api.wait(job, lambda s: s["step"] >= 2)
        api.client.post(f"/v1/jobs/{job}/cancel")
        assert api.finished(job)["status"] == "cancelled"
        torch.cuda.synchronize()
        allocated.append(torch.cuda.memory_allocated())
        reserved.append(torch.cuda.memory_reserved())
        assert allocated[-1] < torch.cuda.max_memory_allocated()
    assert allocated[1] == allocated[0]
    assert reserved[1] <= reserved[0] and reserved[1] < torch.cuda.max_memory_reserved()


def test_a_finished_job_is_removed_after_keep_hours(start_service, tmp_path):
    api = start_service(keep=1 / 3600)  # one second: the janitor looks four times as often
    job = api.submit(QUICK).json()["id"]
    assert api.finished(job)["status"] == "succeeded"
    api.wait(job, lambda s: "status" not in s and s["error"].startswith("no job"), timeout_s=60)
    assert api.client.get(f"/v1/jobs/{job}/result").status_code == 404
    assert not (tmp_path / "state" / "jobs" / job).exists()
    assert any(line.startswith("removed 1 job(s) finished over") for line in api.log)
