"""api: the asynchronous jobs service (dcrt.serving.jobs) in front of the engine."""

from __future__ import annotations

import os
from dataclasses import replace

from dcrt.cli.app import app, log
from dcrt.cli.options import SERVED_MODEL, GroupedCommand, takes
from dcrt.loading import BackendRequest
from dcrt.presets import DEFAULT_PRESET
from dcrt.serving.jobs.settings import ApiSettings


@app.command(cls=GroupedCommand)
@takes(model=(BackendRequest, SERVED_MODEL), settings=ApiSettings)
def api(model: BackendRequest, settings: ApiSettings) -> None:
    """The jobs API: POST /v1/jobs (multipart: image + JSON request) answers 202 with the job's id; poll
    GET /v1/jobs/ID or stream GET /v1/jobs/ID/events; GET /v1/jobs/ID/result is the video; POST
    /v1/jobs/ID/cancel. Jobs live in --state (SQLite) and survive a crash; --workers each load the model once.
    With --triton the workers send the jobs to a `dcrt serve` endpoint (--res: its preset) and load nothing.
    OpenAPI at /docs, Prometheus at /metrics."""
    model = replace(model, preset=model.preset or DEFAULT_PRESET)
    model.preset_config()  # an unknown preset: one line
    model.check_names()
    settings = settings.with_environment(os.environ)
    settings.check()
    if settings.triton is not None:
        model.preset_config().require_family("dynamicrafter", "--triton")  # what `dcrt serve` serves
    else:
        model.required_weights()  # a missing checkpoint fails here, not in a worker

    from dcrt.serving.jobs.app import serve_jobs
    from dcrt.serving.jobs.checks import ServedModel
    from dcrt.serving.jobs.service import JobService, engines

    served = ServedModel(model.preset_config(), model.memory, triton=settings.triton is not None)
    jobs = JobService(settings, served, engines(model, settings.triton, log), log)
    serve_jobs(jobs, settings.host, settings.port, settings.token, settings.max_upload_bytes, log)
