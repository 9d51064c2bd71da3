"""The job store on its own (no model, no HTTP): queue order and positions, a full queue, cancel, recovery after a
crash (re-queued once, then failed with its reason), retention, and one service per state folder."""

from __future__ import annotations

import pytest

from dcrt.errors import UsageError
from dcrt.serving.jobs.store import MAX_ATTEMPTS, JobStore, QueueFull


def _submit(store: JobStore, job_id: str, limit: int = 10):
    return store.submit(job_id, "animate", "tiny", "{}", [b"image bytes"], None, limit)


def test_jobs_run_in_order_and_know_their_place(tmp_path):
    store = JobStore(tmp_path)
    jobs = [_submit(store, name) for name in ("a", "b", "c")]
    assert [store.queue_position(j) for j in jobs] == [1, 2, 3]
    assert store.image_paths(jobs[0])[0].read_bytes() == b"image bytes"
    claimed = store.claim()
    assert (claimed.id, claimed.status, claimed.attempts) == ("a", "running", 1)
    assert store.queue_position(store.get("b")) == 1 and store.queue_position(claimed) is None
    with pytest.raises(QueueFull):
        _submit(store, "d", limit=2)
    assert not store.folder("d").exists(), "a refused job leaves no files"
    store.close()


def test_cancel_is_at_once_for_a_queued_job_and_a_mark_for_a_running_one(tmp_path):
    store = JobStore(tmp_path)
    _submit(store, "a"), _submit(store, "b")
    store.claim()
    queued, now = store.cancel("b")
    assert (queued.status, queued.error, now) == ("cancelled", "cancelled while queued", True)
    assert store.cancel("b")[1] is False, "cancelled once"
    running, now = store.cancel("a")
    assert (running.status, running.cancel_requested, now) == ("running", 1, False)
    assert store.cancel("nope") == (None, False)
    store.close()


def test_recovery_requeues_a_running_job_once_then_fails_it_with_its_reason(tmp_path):
    store = JobStore(tmp_path)
    for name in ("a", "b", "c"):
        _submit(store, name)
    store.claim()
    store.progress("a", 3, 10, "denoising")
    store.close()  # the service dies with "a" running

    store = JobStore(tmp_path)
    assert store.recover() == ["job a was running when the service stopped (at step 3 of 10): queued again"]
    assert [(j.id, j.status) for j in reversed(store.listed())] == [("a", "queued"), ("b", "queued"), ("c", "queued")]
    assert store.claim().id == "a", "it keeps its place"
    store.close()  # ... and dies again under the same job

    store = JobStore(tmp_path)
    (line,) = store.recover()
    failed = store.get("a")
    assert failed.status == "failed" and failed.attempts == MAX_ATTEMPTS
    assert failed.error == "the service stopped while this job ran, 2 times (at loading)" and failed.error in line
    assert store.claim().id == "b"
    store.cancel("b")
    store.close()  # cancelled while running, then the crash: it stays cancelled

    store = JobStore(tmp_path)
    store.recover()
    assert store.get("b").status == "cancelled"
    store.close()


def test_recovery_removes_the_folder_of_a_submit_cut_short(tmp_path):
    store = JobStore(tmp_path)
    _submit(store, "kept")
    (store.folder("orphan")).mkdir(parents=True)
    store.recover()
    assert store.folder("kept").is_dir() and not store.folder("orphan").exists()
    store.close()


def test_finished_jobs_are_removed_after_keep(tmp_path):
    store = JobStore(tmp_path)
    _submit(store, "old"), _submit(store, "new")
    store.claim()
    done = store.finish("old", "succeeded", result="result.mp4")
    (store.folder("old") / "result.mp4").write_bytes(b"video")
    assert store.expire(keep_s=3600, now=done.finished_at + 3599) == 0
    assert store.expire(keep_s=3600, now=done.finished_at + 3601) == 1
    assert store.get("old") is None and not store.folder("old").exists()
    assert store.get("new").status == "queued", "a waiting job is never expired"
    store.close()


def test_one_service_per_state_folder(tmp_path):
    store = JobStore(tmp_path)
    with pytest.raises(UsageError, match="another dcrt api uses --state"):
        JobStore(tmp_path)
    store.close()
    JobStore(tmp_path).close()  # free again once the first has gone


def test_a_webhook_is_pending_from_the_jobs_end_until_it_is_sent(tmp_path):
    store = JobStore(tmp_path)
    store.submit("a", "animate", "tiny", "{}", [b"x"], "http://h/hook", 10)
    store.submit("b", "animate", "tiny", "{}", [b"x"], None, 10)
    store.submit("c", "animate", "tiny", "{}", [b"x"], "http://h/hook", 10)
    store.claim(), store.claim()
    store.finish("a", "succeeded", result="result.mp4"), store.finish("b", "succeeded", result="result.mp4")
    store.cancel("c")
    assert [(j.id, j.webhook_state) for j in store.pending_webhooks()] == [("a", "pending"), ("c", "pending")]
    store.webhook_sent("a", delivered=True)
    store.webhook_sent("c", delivered=False)
    assert store.pending_webhooks() == [] and store.get("b").webhook_state is None
    assert (store.get("a").webhook_state, store.get("c").webhook_state) == ("delivered", "failed")
    store.close()
