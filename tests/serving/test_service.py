"""The repository `dcrt serve --write-repo` writes, and the model it runs, in-process (no Triton): one request
-> the frames `dcrt.animate` makes with the same seed; each bad request -> its own one-line error."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
from PIL import Image

import dcrt
from dcrt.errors import UsageError
from dcrt.loading import BackendRequest
from dcrt.serving.repository import INPUTS, ServeOptions, backend_request_from_config, config_text, write_repository
from dcrt.serving.service import VideoService, sampling_request

REQUEST = BackendRequest(preset="tiny", random_weights=True, backend="torch", device="cpu")


def png(colour: str, size=(80, 72)) -> np.ndarray:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return np.frombuffer(buffer.getvalue(), np.uint8)[None]


def text(value: str) -> np.ndarray:
    return np.frombuffer(value.encode(), np.uint8)[None]


@pytest.fixture(scope="module")
def service() -> VideoService:
    return VideoService(REQUEST)


def test_config_holds_batching_queue_instances_and_the_backend(tmp_path):
    serve = ServeOptions(instances=3, max_batch=5, max_queue=7, queue_timeout_s=2.5)
    model = write_repository(tmp_path / "repo", REQUEST, serve, python_path=["/opt/dcrt"])
    config = (model / "config.pbtxt").read_text()
    assert re.search(r"^max_batch_size: 5$", config, re.M)
    assert re.search(r"max_queue_size: 7\n", config) and "default_timeout_microseconds: 2500000\n" in config
    assert "timeout_action: REJECT" in config
    assert "instance_group [ { count: 3 kind: KIND_CPU } ]" in config
    assert [m for m in re.findall(r'name: "([A-Z_]+)"', config)][: len(INPUTS)] == [t.name for t in INPUTS]
    # The backend request survives the round trip through the pbtxt string (as Triton hands it over, as JSON).
    stored = re.search(r'string_value: (".*") }', config).group(1)
    parsed = {"parameters": {"backend_request": {"string_value": json.loads(stored)}}}
    assert backend_request_from_config(parsed) == REQUEST
    assert "'/opt/dcrt'" in (model / "1" / "model.py").read_text()


@pytest.mark.parametrize(("device", "kind"), [(None, "KIND_AUTO"), ("cuda", "KIND_GPU"), ("cuda:1", "KIND_GPU")])
def test_instances_go_per_gpu_when_the_device_is_not_the_cpu(device, kind):
    assert f"kind: {kind} }}" in config_text(BackendRequest(preset="tiny", device=device), ServeOptions())


def test_a_request_gives_the_frames_dcrt_animate_gives(service, tmp_path):
    image = tmp_path / "a.png"
    image.write_bytes(png("teal").tobytes())
    options = {"steps": 2, "seed": 42, "eta": 1.0}
    out = service.run({"IMAGE": png("teal"), "PROMPT": text("a boat"), "OPTIONS": text(json.dumps(options))})
    expected = dcrt.animate(dcrt.open_backend(REQUEST), image, "a boat", **options).frames
    assert out["FRAMES"].shape == (1, *expected.shape) and out["FRAMES"].dtype == np.uint8
    np.testing.assert_array_equal(out["FRAMES"][0], expected)


def test_interpolate_and_loop_run_and_the_video_comes_as_mp4(service):
    inputs = {"IMAGE": png("teal"), "LAST_IMAGE": png("orange"), "OPTIONS": text('{"steps": 1}')}
    both = service.run(inputs | {"MODE": text("interpolate")}, ("FRAMES", "VIDEO"))
    assert both["FRAMES"].shape[1] == 16 and both["VIDEO"].tobytes()[4:8] == b"ftyp"
    assert service.run(inputs | {"MODE": text("loop")})["FRAMES"].shape[1] == 15


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"IMAGE": text("not a picture")}, "IMAGE is not an image PIL can read"),
        ({"MODE": text("dance")}, "unknown mode 'dance'"),
        ({"MODE": text("interpolate")}, "interpolate needs LAST_IMAGE"),
        ({"OPTIONS": text('{"steps": 5000}')}, "steps must be at most 1000"),
        ({"OPTIONS": text('{"guidance_rescale": 2}')}, "guidance rescale must be in [0, 1]"),
        ({"OPTIONS": text('{"steps": "many"}')}, "option steps must be int"),
        ({"OPTIONS": text('{"stepz": 5}')}, "unknown sampling option(s) stepz"),
        ({"OPTIONS": text("[1]")}, "must be a JSON object"),
        ({"PROMPT": np.array([[0xFF, 0xFE]], np.uint8)}, "PROMPT must be UTF-8"),
    ],
)
def test_a_bad_request_gets_its_error_and_the_next_one_is_served(service, change, message):
    good = {"IMAGE": png("teal"), "OPTIONS": text('{"steps": 1}')}
    outcome = service.respond(good | change)
    assert outcome.outputs is None and message in outcome.error and "\n" not in outcome.error
    assert service.respond(good).outputs["FRAMES"].shape == (1, 16, 64, 64, 3)


def test_a_cancelled_request_stops_between_steps(service):
    calls = []

    def cancelled() -> bool:
        calls.append(1)
        return len(calls) >= 2

    outcome = service.respond({"IMAGE": png("teal"), "OPTIONS": text('{"steps": 5}')}, cancelled=cancelled)
    assert outcome.error == "cancelled at step 2 of 5"


def test_sampling_request_accepts_ints_for_floats_and_null_for_defaults():
    assert sampling_request('{"guidance_scale": 3, "eta": null}') == dcrt.SamplingRequest(guidance_scale=3)
    with pytest.raises(UsageError, match="option seed must be int, got True"):
        sampling_request('{"seed": true}')
