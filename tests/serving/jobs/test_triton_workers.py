"""`dcrt api --triton URL`: the workers send each job to a `dcrt serve` endpoint (a real tritonserver, the [serve]
extra's, tiny preset, loopback only) and load no model; the job's progress comes when Triton answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcrt.serving.repository import ServeOptions, write_repository
from dcrt.serving.server import free_port, start_server
from tests.serving.jobs._service import QUICK, TINY, png

pytestmark = pytest.mark.serve
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def triton(tmp_path_factory):
    root = tmp_path_factory.mktemp("triton")
    write_repository(root / "repo", TINY, ServeOptions(max_batch=1, max_queue=4), python_path=[str(REPO)])
    with open(root / "server.log", "wb") as log:
        running = start_server(root / "repo", port=free_port(), log=log)
        try:
            running.wait_ready(timeout_s=600)  # a hang guard: loading may take minutes on a loaded machine
            yield running.url
        finally:
            running.stop()


def test_jobs_run_on_a_dcrt_serve_endpoint(start_service, triton, frame_count, tmp_path):
    api = start_service(triton=triton)
    job = api.submit(QUICK | {"steps": 2}).json()
    done = api.finished(job["id"])
    assert (done["status"], done["step"], done["steps"]) == ("succeeded", 2, 2), done
    (tmp_path / "v.mp4").write_bytes(api.client.get(done["result_url"]).content)
    assert frame_count(str(tmp_path / "v.mp4")) == 16
    three = api.submit(QUICK | {"mode": "interpolate"}, [png(), png("orange"), png("navy")])
    assert three.status_code == 422 and "at most two key frames" in three.json()["error"]
    bad = api.submit(QUICK | {"frame_stride": 1000})
    assert bad.status_code == 422 and "frame stride 1000 is out of range" in bad.json()["error"]
