"""`dcrt serve` under a real tritonserver (the [serve] extra's), tiny preset, loopback only: concurrent requests
batched dynamically and equal to the in-process pipeline, bad requests failing alone, a full queue refusing
at once, a queue timeout and a cancellation freeing their slots, a restart serving again, and `dcrt client`.
Every wait is bounded; every server is stopped by PID."""

from __future__ import annotations

import io
import queue
import signal
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dcrt.errors import BackendUnavailable, UsageError
from dcrt.families.dynamicrafter.options import SamplingRequest
from dcrt.loading import BackendRequest
from dcrt.serving.client import generate_remote, request_inputs
from dcrt.serving.repository import MODEL_NAME, ServeOptions, write_repository
from dcrt.serving.server import Server, free_port, start_server
from dcrt.serving.service import VideoService

pytestmark = pytest.mark.serve
REPO = Path(__file__).resolve().parents[2]
REQUEST = BackendRequest(preset="tiny", random_weights=True, backend="torch", device="cpu")
TINY = ["--res", "tiny", "--random-weights", "--backend", "torch", "--device", "cpu"]


def png(colour: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (72, 64), colour).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server on a repository written as `dcrt serve --write-repo` writes it (with this checkout's dcrt)."""
    root = tmp_path_factory.mktemp("triton")
    write_repository(root / "repo", REQUEST, ServeOptions(max_batch=4, max_queue=16), python_path=[str(REPO)])
    with open(root / "server.log", "wb") as log:
        running = start_server(root / "repo", port=free_port(), log=log)
        try:
            running.wait_ready(timeout_s=600)  # a hang guard: loading may take minutes on a loaded machine
            yield running
        finally:
            running.stop()
    assert running.process.returncode is not None


def metric(url: str, name: str) -> float:
    metrics_url = url.rsplit(":", 1)[0] + f":{int(url.rsplit(':', 1)[1]) + 2}/metrics"
    with urllib.request.urlopen(metrics_url, timeout=60) as response:  # a hang guard, not a budget
        lines = response.read().decode().splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(name + "{"))


def test_concurrent_requests_batch_and_equal_the_in_process_pipeline_while_bad_ones_fail_alone(server):
    seeds = list(range(100, 108))
    bad = {"not an image": (b"junk", "animate"), "unknown mode": (png("teal"), "dance")}

    def good(seed):
        return generate_remote(server.url, [png("teal")], "a boat", "animate", SamplingRequest(steps=2, seed=seed))

    def failing(case):
        image, mode = bad[case]
        try:
            generate_remote(server.url, [image], "x", mode, SamplingRequest(steps=2))
        except UsageError as exc:
            return str(exc)
        return None

    with ThreadPoolExecutor(len(seeds) + len(bad)) as pool:
        futures = [pool.submit(good, s) for s in seeds] + [pool.submit(failing, c) for c in bad]
        results = [f.result(timeout=600) for f in futures]  # a hang guard: a loaded machine may take minutes
    local = VideoService(REQUEST)
    for seed, result in zip(seeds, results):
        inputs = request_inputs([png("teal")], "a boat", "animate", SamplingRequest(steps=2, seed=seed))
        # The served frames come from another process, and a pixel may round to the neighbouring level: seen once
        # in CI (124 of 196,608 values, by 1), never reproduced alone; the likely cause is a CPU reduction split by
        # another thread count in Triton's stub. The float error is far below one level, so never by more.
        served, here = result["FRAMES"].astype(np.int16), local.run(inputs)["FRAMES"][0].astype(np.int16)
        assert served.shape == here.shape and np.abs(served - here).max() <= 1, seed
    assert "is not an image PIL can read" in results[len(seeds)]
    assert "unknown mode 'dance'" in results[len(seeds) + 1]
    served, executions = (
        metric(server.url, "nv_inference_request_success"),
        metric(server.url, "nv_inference_exec_count"),
    )
    assert served >= len(seeds) and executions < served  # dynamic batching: fewer model calls than requests


def test_dcrt_client_writes_the_video_and_a_bad_image_is_one_line(server, tmp_path):
    image, out = tmp_path / "a.png", tmp_path / "a.mp4"
    image.write_bytes(png("orange"))
    command = [sys.executable, "-m", "dcrt", "client", server.url]
    done = subprocess.run(  # the timeouts here and below are hang guards: a loaded machine may take minutes
        [*command, str(image), "a boat", "--steps", "2", "-o", str(out)], capture_output=True, timeout=600
    )
    assert done.returncode == 0, done.stderr.decode()
    assert out.read_bytes()[4:8] == b"ftyp" and done.stdout.decode().strip() == str(out)
    (tmp_path / "junk.png").write_bytes(b"junk")
    bad = subprocess.run(
        [*command, str(tmp_path / "junk.png"), "x", "-o", str(tmp_path / "b.mp4")], capture_output=True, timeout=600
    )
    assert bad.returncode == 2 and bad.stderr.decode().count("\n") <= 2 and "not an image" in bad.stderr.decode()
    assert not (tmp_path / "b.mp4").exists()


def _timed(url: str, steps: int, seed: int) -> float:
    start = time.monotonic()
    generate_remote(url, [png("teal")], "x", "animate", SamplingRequest(steps=steps, seed=seed))
    return time.monotonic() - start


def test_a_request_that_waited_too_long_or_was_cancelled_frees_its_slot(server):
    """While a long request runs: one with a 0.5 s queue timeout is refused with Triton's timeout error; the long
    one, cancelled over gRPC, stops between denoising steps, so the next request is served at once."""
    import tritonclient.grpc as grpc
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException

    step_s = (_timed(server.url, 22, 1) - _timed(server.url, 2, 1)) / 20  # one denoising step, without the rest
    long_steps = 1000
    host, port = server.url.split("//")[1].rsplit(":", 1)
    client = grpc.InferenceServerClient(f"{host}:{int(port) + 1}")
    tensors = []
    for name, array in request_inputs([png("teal")], "x", "animate", SamplingRequest(steps=long_steps)).items():
        tensors.append(grpc.InferInput(name, list(array.shape), "UINT8").set_data_from_numpy(array))
    answers = queue.Queue()
    started = time.monotonic()
    call = client.async_infer(MODEL_NAME, tensors, callback=lambda result, error: answers.put(error))
    # The long request is running after a tenth of its own length (100 steps' time: it scales with the machine,
    # where a fixed 0.5 s could pass on a loaded one before the request reaches the model): the next one queues
    # behind it and waits past its 0.5 s queue timeout.
    time.sleep(long_steps * step_s / 10)

    waiting = http.InferenceServerClient(server.url.split("//")[1])
    inputs = []
    for name, array in request_inputs([png("teal")], "x", "animate", SamplingRequest(steps=2)).items():
        inputs.append(http.InferInput(name, list(array.shape), "UINT8").set_data_from_numpy(array))
    with pytest.raises(InferenceServerException, match="[Tt]imeout"):
        waiting.infer(MODEL_NAME, inputs, timeout=500_000)  # microseconds; the queue policy allows the override
    waiting.close()

    call.cancel()
    assert answers.get(timeout=600) is not None  # the cancelled call ends with an error, not frames (hang guard)
    cancelled_at = time.monotonic()
    next_request_s = _timed(server.url, 2, 3)
    left_of_the_long_run = long_steps * step_s - (cancelled_at - started)
    # Durations measured on this machine against each other, not against a budget: a slow or loaded machine
    # stretches both sides.
    assert left_of_the_long_run > 4 * next_request_s, (step_s, next_request_s)  # the check below can tell them apart
    assert time.monotonic() - cancelled_at < left_of_the_long_run / 2
    client.close()


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_dcrt_serve_refuses_when_its_queue_is_full_and_stops_with_its_server(tmp_path):
    """`dcrt serve` itself (a restart of the model on another server): one request runs, one waits, the rest are
    refused at once; SIGTERM to dcrt stops tritonserver too."""
    port = free_port()
    options = ["--port", str(port), "--max-batch", "1", "--max-queue", "1"]
    with open(tmp_path / "serve.log", "wb") as log:
        dcrt_serve = subprocess.Popen([sys.executable, "-m", "dcrt", "serve", *TINY, *options], stdout=log, stderr=log)
    try:
        url = f"http://127.0.0.1:{port}"
        Server(dcrt_serve, url, tmp_path).wait_ready(timeout_s=600)  # a hang guard: a loaded machine may take minutes
        triton = _children(dcrt_serve.pid)

        def one(seed):
            try:
                generate_remote(url, [png("teal")], "x", "animate", SamplingRequest(steps=20, seed=seed))
                return "ok"
            except BackendUnavailable as exc:
                return str(exc)

        with ThreadPoolExecutor(6) as pool:
            outcomes = list(pool.map(one, range(6), timeout=600))  # a hang guard: a loaded machine may take minutes
        assert outcomes.count("ok") >= 1
        assert any("Exceeds maximum queue size" in o for o in outcomes), outcomes
    finally:
        dcrt_serve.send_signal(signal.SIGTERM)
        dcrt_serve.wait(60)
    assert triton and not any(Path(f"/proc/{pid}").exists() for pid in triton)


def test_the_page_sends_its_work_to_the_server(server, tmp_path, frame_count):
    """`dcrt ui --server URL`: the same page, the video made by Triton (the same frames as in-process)."""
    from gradio_client import Client, handle_file

    from dcrt.presets import get_preset
    from dcrt.ui import build_ui, remote

    image = tmp_path / "a.png"
    image.write_bytes(png("teal"))
    page = build_ui(remote(server.url), get_preset("tiny"))
    page.queue().launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        video = Client(page.local_url, verbose=False).predict(
            handle_file(str(image)), "a boat", 2, 7.5, 1.0, 24, 5, api_name="/animate"
        )
    finally:
        page.close()
    assert frame_count(video) == 16
