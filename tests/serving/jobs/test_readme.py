"""The README's curl exchange with `dcrt api`, run as written (bash, curl) against a tiny service on a loopback port:
its address comes in through $DCRT_API, as the block reads it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[3] / "README.md"


def exchange() -> str:
    section = README.read_text().split("## Jobs API\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    return next(block for block in blocks if "curl" in block)


@pytest.mark.skipif(shutil.which("curl") is None, reason="the README's exchange is curl commands: no curl here")
def test_the_readme_exchange_runs_as_written(start_service, tmp_path):
    api = start_service()
    env = dict(os.environ, DCRT_API=api.url, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", exchange()], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "boat.mp4").read_bytes()[4:8] == b"ftyp"
    events = [json.loads(line[6:]) for line in done.stdout.splitlines() if line.startswith("data: ")]
    assert events and events[-1]["status"] == "succeeded" and events[-1]["steps"] == 2
    assert events[-1]["scores"]["frames"] == 16 and f'"motion":{events[-1]["scores"]["motion"]}' in done.stdout
    listed = api.client.get("/v1/jobs", params={"status": "succeeded"}).json()["jobs"]
    assert [job["id"] for job in listed] == [events[-1]["id"]]
