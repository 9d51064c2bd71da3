"""The example HTTP service over the C++ library (cpp_host/examples/service.cpp, cpp-httplib), on loopback: it binds
127.0.0.1 by default, answers POST /animate with an mp4, and answers each bad request with a 4xx and one line,
carrying on after it. On the tiny preset's AOTInductor bundle (marker aoti)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest


def post(url: str, body: bytes) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


@pytest.mark.aoti
def test_service_answers_and_survives_bad_requests(host_build, host_bundle, host_image, tmp_path, frame_count):
    import imageio_ffmpeg

    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "ffmpeg").symlink_to(imageio_ffmpeg.get_ffmpeg_exe())
    env = dict(os.environ, PATH=f"{tmp_path / 'bin'}:/usr/bin:/bin")
    command = [host_build / "dcrt_host_service", "--bundle", host_bundle, "--port", "0"]  # any free port
    service = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = service.stdout.readline()  # after the bundle is loaded
        assert line.startswith("listening on http://127.0.0.1:"), line + service.stderr.read()
        url = line.split()[-1]
        with urllib.request.urlopen(f"{url}/health", timeout=60) as response:
            assert response.read() == b"ok\n"
        image = base64.b64encode(Path(host_image).read_bytes()).decode()
        good = {"image": image, "prompt": "a boat", "seed": 5, "steps": 2}
        bad = {
            b"{not json": "the body is not JSON",
            json.dumps(good | {"colour": "red"}).encode(): 'unknown field "colour"',
            json.dumps(good | {"image": base64.b64encode(b"plain text").decode()}).encode(): "is not a PNG or JPEG",
            json.dumps({k: v for k, v in good.items() if k != "seed"}).encode(): '"seed" is required',
            json.dumps(good | {"steps": "two"}).encode(): '"steps" has the wrong type',
            json.dumps(good | {"steps": 0}).encode(): "--steps must be >= 1",
        }
        for body, message in bad.items():
            status, kind, text = post(f"{url}/animate", body)
            assert status == 400 and kind.startswith("text/plain"), (status, text)
            assert message in text.decode() and text.decode().count("\n") == 1, text
        status, kind, video = post(f"{url}/animate", json.dumps(good).encode())  # after the bad ones
        assert status == 200 and kind == "video/mp4", video[:200]
        (tmp_path / "boat.mp4").write_bytes(video)
        assert frame_count(str(tmp_path / "boat.mp4")) == 16
        assert post(f"{url}/animate", b"[]")[0] == 400  # and it still answers after a good one
        assert service.poll() is None
    finally:
        service.terminate()
        service.wait(timeout=60)
    log = service.stderr.read()
    assert "POST /animate -> 200" in log and "POST /animate -> 400" in log
