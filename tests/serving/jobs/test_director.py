"""A job's prompt chosen from its image and its video scored (the director behind the jobs API), end to end on a
loopback service with the tiny preset; the checks behind them: who may choose a prompt, and a store made before the
columns that hold them."""

from __future__ import annotations

import io
import json
import sqlite3

import numpy as np
import pytest
from PIL import Image

from dcrt.errors import UsageError
from dcrt.presets import get_preset
from dcrt.serving.jobs.checks import ServedModel, plan_job
from dcrt.serving.jobs.schema import JobRequest
from tests.serving.jobs._service import QUICK, TINY, png

SCORED_FIELDS = ("frames", "height", "width", "motion", "flicker", "consistency", "image_similarity", "prompt_score")


def _spy_on_prompts(monkeypatch, engine) -> list:
    """The plans the session's engine is given, recorded as it runs them."""
    seen, run = [], engine.run

    def recording(plan, *args):
        seen.append(plan)
        return run(plan, *args)

    monkeypatch.setattr(engine, "run", recording)
    return seen


def test_a_job_without_a_prompt_has_one_chosen_and_its_video_scored(start_service, tiny_engine, monkeypatch):
    """The prompt chosen is the one `dcrt.describe` ranks first for the same image and checkpoint, the video follows
    it, and the scores (pixel and CLIP metrics) are in the status and at /result?scores=true."""
    import dcrt

    seen = _spy_on_prompts(monkeypatch, tiny_engine)
    api = start_service()
    job = api.submit({"steps": 1, "guidance_scale": 1.0, "score": True}).json()
    assert job["prompt"] is None
    done = api.finished(job["id"])
    assert done["status"] == "succeeded", done

    image = np.asarray(Image.open(io.BytesIO(png())).convert("RGB"))
    expected = dcrt.describe(image, TINY, top=1)[0].prompt
    assert done["prompt"] == expected and [plan.prompt for plan in seen] == [expected]
    assert any(f"auto prompt for {job['id']}: {expected!r}" in line for line in api.log), api.log

    scores = done["scores"]
    assert all(scores[name] is not None for name in SCORED_FIELDS), scores
    assert (scores["frames"], scores["missing"]) == (16, {})
    assert -1.0 <= scores["consistency"] <= 1.0 and 0.0 <= scores["prompt_score"] <= 2.5
    served = api.client.get(f"/v1/jobs/{job['id']}/result", params={"scores": "true"})
    assert served.headers["content-type"] == "application/json" and served.json() == scores


def test_a_prompt_given_is_kept_and_scores_come_only_when_asked(start_service):
    api = start_service()
    job = api.submit(QUICK).json()
    assert job["prompt"] == "a boat"
    done = api.finished(job["id"])
    assert (done["status"], done["prompt"], done["scores"]) == ("succeeded", "a boat", None)
    refused = api.client.get(f"/v1/jobs/{job['id']}/result", params={"scores": "true"})
    assert refused.status_code == 409 and 'submit it with "score": true' in refused.json()["error"]


def test_the_services_chat_model_proposes_the_prompt(start_service, chat):
    from _chat import GOOD

    from dcrt.director.llm import LLMRequest

    api = start_service(llm=LLMRequest(chat.url, "fake-vision").resolved({}))
    done = api.finished(api.submit({"steps": 1, "guidance_scale": 1.0}).json()["id"])
    assert (done["status"], done["prompt"]) == ("succeeded", GOOD["prompts"][0]), done
    [asked] = chat.requests
    assert asked["body"]["model"] == "fake-vision"
    assert "data:image/png;base64," in json.dumps(asked["body"]["messages"])


def test_key_frames_get_a_prompt_for_each_pair(start_service, tiny_engine, monkeypatch):
    seen = _spy_on_prompts(monkeypatch, tiny_engine)
    api = start_service()
    keyframes = [png("teal"), png("orange"), png("white")]
    job = api.submit({"mode": "interpolate", "auto_prompt": True, "steps": 1, "guidance_scale": 1.0}, keyframes)
    done = api.finished(job.json()["id"])
    assert done["status"] == "succeeded", done
    [plan] = seen
    assert len(plan.pair_prompts) == 2 and plan.prompt == plan.pair_prompts[0] == done["prompt"]


def test_a_service_that_cannot_describe_refuses_a_job_without_a_prompt():
    from dcrt.director.llm import LLMRequest
    from dcrt.loading import BackendRequest
    from dcrt.serving.jobs.director import cannot_describe

    no_checkpoint = BackendRequest(preset="512")  # none here: the suite's checkpoint folder is empty
    why = cannot_describe(no_checkpoint, None)
    assert "no checkpoint of preset 512 here" in why
    assert cannot_describe(no_checkpoint, LLMRequest("http://127.0.0.1:9/v1", "m").resolved()) is None
    assert cannot_describe(TINY, None) is None
    served = ServedModel(get_preset("512"), "auto", triton=True, cannot_describe=why)
    with pytest.raises(UsageError, match="no checkpoint of preset 512 here .*: give the job a prompt"):
        plan_job(JobRequest(), served, 1)
    assert plan_job(JobRequest(prompt="a boat"), served, 1).prompt == "a boat"
    svd = ServedModel(get_preset("tiny-svd"), "auto")
    assert not plan_job(JobRequest(), svd, 1).auto_prompt  # no text conditioning: nothing to choose
    with pytest.raises(UsageError, match="auto_prompt"):
        plan_job(JobRequest(auto_prompt=True), svd, 1)


def test_a_store_from_before_prompts_and_scores_gains_their_columns(tmp_path):
    from dcrt.serving.jobs.store import DATABASE, JobStore

    (tmp_path / "s").mkdir()
    old = sqlite3.connect(tmp_path / "s" / DATABASE)
    old.execute(
        "CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, status TEXT NOT NULL, "
        "mode TEXT NOT NULL, preset TEXT NOT NULL, request TEXT NOT NULL, images INTEGER NOT NULL, webhook TEXT, "
        "webhook_state TEXT, created_at REAL NOT NULL, started_at REAL, finished_at REAL, step INTEGER NOT NULL "
        "DEFAULT 0, steps INTEGER, stage TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, cancel_requested "
        "INTEGER NOT NULL DEFAULT 0, error TEXT, result TEXT)"
    )
    old.execute("INSERT INTO jobs (id, status, mode, preset, request, images, created_at, stage) "
                "VALUES ('old', 'queued', 'animate', 'tiny', '{}', 1, 0, 'waiting')")  # fmt: skip
    old.commit()
    old.close()
    store = JobStore(tmp_path / "s")
    try:
        job = store.claim()
        assert (job.id, job.prompt, job.scores) == ("old", None, None)
        store.chose_prompt("old", "a boat")
        assert store.finish("old", "succeeded", None, "result.mp4", "{}").prompt == "a boat"
    finally:
        store.close()
