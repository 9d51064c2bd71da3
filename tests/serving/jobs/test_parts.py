"""The service's small decisions on their own: which device each worker loads on, which webhook URLs are allowed, the
signature a receiver checks, and the settings that need a token or a secret."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from dcrt.errors import UsageError
from dcrt.serving.jobs.service import worker_device
from dcrt.serving.jobs.settings import ApiSettings
from dcrt.serving.jobs.webhooks import WebhookSender, signature


@pytest.mark.parametrize(
    ("device", "gpus", "expected"),
    [
        ("cuda", 2, ["cuda:0", "cuda:1", "cuda:0"]),
        ("cuda", 1, ["cuda", "cuda", "cuda"]),
        ("cuda:1", 4, ["cuda:1"] * 3),
        ("cpu", 4, ["cpu"] * 3),
        (None, 4, [None] * 3),
    ],
)
def test_workers_go_over_the_gpus_only_when_cuda_is_asked_for(device, gpus, expected):
    assert [worker_device(device, i, gpus) for i in range(3)] == expected


@pytest.mark.parametrize(
    ("url", "refusal"),
    [
        ("http://hooks.example.com/done", None),
        ("https://HOOKS.example.com:443/done", None),
        ("http://127.0.0.1:9000/x", None),  # host:port on the list
        ("http://127.0.0.1:9001/x", "127.0.0.1:9001 is not on"),
        ("http://hooks.example.com@evil.example/x", "evil.example:80 is not on"),  # user info is not the host
        ("ftp://hooks.example.com/x", "must be an http:// or https:// URL"),
        ("http://hooks.example.com:99999/x", "is not a URL"),
        ("hooks.example.com", "must be an http:// or https:// URL"),
    ],
)
def test_webhooks_go_only_to_allowed_hosts(url, refusal):
    sender = WebhookSender(["hooks.example.com", "127.0.0.1:9000"], "key", 0, 0.0, lambda line: None)
    if refusal is None:
        sender.check(url)
    else:
        with pytest.raises(UsageError, match=refusal):
            sender.check(url)


def test_the_signature_is_the_bodys_hmac_sha256():
    body = b'{"id": "x", "status": "succeeded"}'
    assert signature("key", body) == "sha256=" + hmac.new(b"key", body, hashlib.sha256).hexdigest()
    assert signature("key", body) != signature("key", body + b" ")


@pytest.mark.parametrize(
    ("changes", "refusal"),
    [
        ({"host": "0.0.0.0"}, "binding 0.0.0.0 serves other machines"),
        ({"host": "::"}, "binding :: serves other machines"),
        ({"host": "localhost"}, None),
        ({"host": "::1"}, None),
        ({"host": "10.0.0.5", "token": "t"}, None),
        ({"webhook_allow": ["h"]}, "give --webhook-secret"),
        ({"max_queue": 0}, "--max-queue must be positive"),
        ({"port": 70000}, "--port must be from 1 to 65535"),
    ],
)
def test_settings_that_need_a_token_or_a_secret(changes, refusal, tmp_path):
    settings = ApiSettings(state=tmp_path / "s", **changes)
    if refusal is None:
        settings.check()
    else:
        with pytest.raises(UsageError, match=refusal):
            settings.check()


def test_the_token_and_secret_come_from_the_environment_unless_given():
    env = {"DCRT_API_TOKEN": "env-token", "DCRT_WEBHOOK_SECRET": "env-secret"}
    assert ApiSettings().with_environment(env).token == "env-token"
    assert ApiSettings(token="flag").with_environment(env).token == "flag"
    assert ApiSettings().with_environment({}).webhook_secret is None


def test_a_job_is_checked_by_its_presets_family():
    """The command line's checks, through the family registry: an SVD preset takes its own options and no
    DynamiCrafter one, and its prompt is dropped (no text conditioning)."""
    from dcrt.presets import get_preset
    from dcrt.serving.jobs.checks import ServedModel, plan_job
    from dcrt.serving.jobs.schema import JobRequest

    svd = ServedModel(get_preset("tiny-svd"), "auto")
    plan = plan_job(JobRequest(prompt="ignored", motion_bucket_id=40, steps=3, fps=6), svd, 1)
    assert (plan.prompt, plan.steps, plan.fps, plan.frames) == (None, 3, 6, 6)
    assert plan.sampling["motion_bucket_id"] == 40
    with pytest.raises(UsageError, match="--guidance-scale: DynamiCrafter option"):
        plan_job(JobRequest(guidance_scale=2.0), svd, 1)
    with pytest.raises(UsageError, match="preset tiny-svd cannot loop"):
        plan_job(JobRequest(mode="loop"), svd, 1)
    tiny = plan_job(JobRequest(prompt="a boat", mode="interpolate"), ServedModel(get_preset("tiny"), "auto"), 3)
    assert (tiny.frames, tiny.prompt, tiny.steps) == (31, "a boat", 50)
