"""Nothing lost: `dcrt api` (the command, in a child process) killed with SIGKILL while one job runs and two wait,
then started again on the same --state: all three finish, the interrupted one run again once, the others once.
And the command's own refusals, each one line before any model loads."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from dcrt.serving.server import free_port
from tests.serving.jobs._service import QUICK, WAIT_S, png

REPO = Path(__file__).resolve().parents[3]


def _start(state: Path, port: int, log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    command = [
        sys.executable, "-m", "dcrt", "api", "--res", "tiny", "--random-weights", "--backend", "torch",
        "--device", "cpu", "--state", str(state), "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    with open(log, "ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _ready(client: httpx.Client, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + WAIT_S
    while True:
        assert process.poll() is None, log.read_text()
        try:
            if client.get("/healthz").json()["ready"] == 1:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _wait(client: httpx.Client, job_id: str, until) -> dict:
    deadline = time.monotonic() + WAIT_S
    while not until(status := client.get(f"/v1/jobs/{job_id}").json()):
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    return status


def test_kill_9_while_one_runs_and_two_wait_then_restart_finishes_all_three_once(tmp_path):
    state, log, port = tmp_path / "state", tmp_path / "api.log", free_port()
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    first = _start(state, port, log)
    try:
        _ready(client, first, log)
        files = [("image", ("boat.png", png(), "image/png"))]
        # The first job runs long enough to be killed in the middle (a few steps), the others are the cheapest.
        bodies = [QUICK | {"steps": 3}, QUICK, QUICK | {"seed": 7}]
        ids = [client.post("/v1/jobs", files=files, data={"request": json.dumps(b)}).json()["id"]
               for b in bodies]  # fmt: skip
        _wait(client, ids[0], lambda s: s["status"] == "running" and s["step"] >= 1)
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    finally:
        _stop(first)

    second = _start(state, port, log)
    try:
        _ready(client, second, log)
        ended = [_wait(client, job_id, lambda s: s["status"] in ("succeeded", "failed", "cancelled")) for job_id in ids]
        assert [s["status"] for s in ended] == ["succeeded"] * 3, ended
        assert [s["attempts"] for s in ended] == [2, 1, 1]  # the interrupted one ran again, once; none twice
        assert ended[0]["finished_at"] <= ended[1]["started_at"], "the interrupted job keeps its place in the queue"
        for job_id in ids:
            assert client.get(f"/v1/jobs/{job_id}/result").content[4:8] == b"ftyp"
        assert f"job {ids[0]} was running when the service stopped" in log.read_text()
    finally:
        _stop(second)
        client.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "0.0.0.0"], "binding 0.0.0.0 serves other machines: give a bearer token"),
        (["--workers", "0"], "--workers must be positive"),
        (["--webhook-allow", "hooks.example.com"], "webhooks are signed: give --webhook-secret"),
        (["--res", "nope"], "unknown preset 'nope'"),
        (["--memory", "huge"], "unknown memory profile 'huge'"),
        (["--triton", "grpc://127.0.0.1:8001"], "--triton must look like http://HOST:PORT"),
        (["--triton", "http://127.0.0.1:8000", "--res", "tiny-svd"], "tiny-svd does not support --triton yet"),
        (["--llm", "ftp://127.0.0.1/v1", "--llm-model", "m"], "--llm wants an http:// or https:// URL"),
        (["--llm-fallback"], "--llm-model, --llm-key and --llm-fallback need --llm URL"),
    ],
)
def test_the_command_refuses_bad_settings_in_one_line(run_cli, monkeypatch, tmp_path, args, message):
    monkeypatch.delenv("DCRT_API_TOKEN", raising=False)
    monkeypatch.delenv("DCRT_WEBHOOK_SECRET", raising=False)
    code, out, err = run_cli(["api", "--res", "tiny", "--random-weights", "--state", str(tmp_path / "s"), *args])
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "s").exists()


def test_the_token_may_come_from_the_environment(run_cli, monkeypatch, tmp_path):
    """Binding every interface with $DCRT_API_TOKEN set passes the check; the store's lock then refuses a second
    service on the same state (one line, before any model loads)."""
    from dcrt.serving.jobs.store import JobStore

    monkeypatch.setenv("DCRT_API_TOKEN", "from-env")
    holder = JobStore(tmp_path / "s")
    try:
        code, _, err = run_cli(["api", "--res", "tiny", "--random-weights", "--host", "0.0.0.0", "--state",
                                str(tmp_path / "s")])  # fmt: skip
    finally:
        holder.close()
    assert code == 2 and "another dcrt api uses --state" in err and "from-env" not in err
