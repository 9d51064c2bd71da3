"""Every bad request is a 4xx with one line, checked before anything is queued: the command line's own checks of
sampling options (reached through the preset's family), the service's limits, and the HTTP layer's. Then the
service's OpenAPI spec under a property-based fuzzer (schemathesis): no 5xx, no response the spec does not allow."""

from __future__ import annotations

import json

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.serving.jobs._service import png

A = {"prompt": "a boat"}
TWO = [png(), png("orange")]
BAD = [  # (request, images, status, what the line says)
    ("not json", None, 422, "request: Invalid JSON"),
    (A | {"bogus": 1}, None, 422, "bogus: Extra inputs are not permitted"),
    (A | {"steps": 0}, None, 422, "steps must be at least 1"),
    (A | {"steps": "2"}, None, 422, "request.steps: Input should be a valid integer"),
    (A | {"guidance_scale": -1}, None, 422, "guidance scale must be a finite number >= 0"),
    (A | {"height": 96}, None, 422, "height and width must be positive multiples of 64"),
    (A | {"preset": "512"}, None, 422, "this service runs preset tiny, not 512"),
    (A | {"memory": "low"}, None, 422, "this service runs memory profile auto, not low"),
    (A | {"memory": "huge"}, None, 422, "unknown memory profile 'huge'"),
    (A | {"mode": "interpolate"}, None, 422, "interpolate needs at least two images"),
    (A, TWO, 422, "animate takes one image, got 2"),
    (A | {"auto_prompt": True}, None, 422, "auto_prompt chooses the prompt itself: leave prompt out"),
    (A | {"motion_bucket_id": 5}, None, 422, "Stable Video Diffusion option(s)"),
    (A | {"frames": 64}, None, 422, "the video would have 64 frames, over this service's 32"),
    (A | {"mode": "interpolate"}, [png()] * 4, 422, "the video would have 46 frames, over this service's 32"),
    (A | {"height": 128, "width": 128}, None, 422, "output 128x128 is over this service's 10000 pixels"),
    (A, [png(size=(200, 100))], 422, "image 1 is 200x100, over this service's 10000 pixels"),
    (A, [b"not a picture"], 422, "image 1 is not an image PIL can read"),
    (A | {"format": "png"}, None, 422, "format: Input should be 'mp4', 'gif' or 'webp'"),
    (A | {"format": "gif", "fps": 500}, None, 422, "fps must be from 1 to 100 for gif"),
    (A | {"quality": 99}, None, 422, "quality must be from 0 to 51"),
    (A | {"webhook": "http://127.0.0.1/hook"}, None, 422, "this service sends no webhooks"),
    (A, [png(size=(4000, 4000))], 413, "the request is over this service's"),
]


def test_every_bad_job_is_a_4xx_with_one_line_and_nothing_is_queued(start_service):
    api = start_service(max_frames=32, max_pixels=10_000, max_upload_mb=0.05)
    for request, images, status, line in BAD:
        text = request if isinstance(request, str) else json.dumps(request)
        response = api.client.post(
            "/v1/jobs",
            files=[("image", (f"{i}.png", data, "image/png")) for i, data in enumerate(images or [png()])],
            data={"request": text},
        )
        error = response.json()["error"]
        assert (response.status_code, "\n" in error) == (status, False), (request, error)
        assert line in error, (request, error)
    others = [
        (api.client.post("/v1/jobs", data={"request": json.dumps(A)}), "image: Field required"),
        (api.client.get("/v1/jobs", params={"status": "done"}), "query.status: Input should be"),
        (api.client.get("/v1/jobs", params={"limit": 0}), "query.limit: Input should be greater than or equal"),
        (api.client.get("/v1/jobs/nope/events"), "no job 'nope'"),
        (api.client.delete("/v1/jobs"), "Method Not Allowed"),
    ]
    for response, line in others:
        assert 400 <= response.status_code < 500 and line in response.json()["error"], response.text
    assert api.client.get("/v1/jobs").json() == {"jobs": []}


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
EXAMPLES = 50  # per operation (8 of them): bounded in count, not in time


def test_the_spec_fuzzed_finds_no_5xx_and_no_response_outside_it(start_service):
    api = start_service(max_queue=2)
    spec = api.client.get("/openapi.json").json()
    operations = [result.ok() for result in schemathesis.openapi.from_dict(spec).get_all_operations()]
    assert len(operations) == 8, [op.label for op in operations]
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
            suppress_health_check=list(HealthCheck),
        )  # fmt: skip
        def fuzz(case):
            case.call_and_validate(base_url=api.url, checks=CHECKS)

        fuzz()
