"""api: the asynchronous jobs service (dcrt.serving.jobs) in front of the engine."""

from __future__ import annotations

import os
from dataclasses import replace

from dcrt.cli.app import app, log
from dcrt.cli.options import SERVED_MODEL, GroupedCommand, takes
from dcrt.director.llm import LLMRequest
from dcrt.loading import BackendRequest
from dcrt.presets import DEFAULT_PRESET
from dcrt.serving.jobs.settings import ApiSettings


@app.command(cls=GroupedCommand)
@takes(model=(BackendRequest, SERVED_MODEL), settings=ApiSettings, llm=LLMRequest)
def api(model: BackendRequest, settings: ApiSettings, llm: LLMRequest) -> None:
    """The jobs API: POST /v1/jobs (multipart: image + JSON request) answers 202 with the job's id; poll
    GET /v1/jobs/ID or stream GET /v1/jobs/ID/events; GET /v1/jobs/ID/result is the video; POST
    /v1/jobs/ID/cancel. Jobs live in --state (SQLite) and survive a crash; --workers each load the model once,
    so a job for another preset or memory profile is refused. With --triton the workers send the jobs to a
    `dcrt serve` endpoint (--res: its preset) and load nothing. A job without a prompt has it chosen by the
    checkpoint's CLIP (or --llm). OpenAPI at /docs, Prometheus at /metrics."""
    model = replace(model, preset=model.preset or DEFAULT_PRESET)
    model.preset_config()  # an unknown preset: one line
    model.check_names()
    settings = settings.with_environment(os.environ)
    settings.check()
    chat = llm.resolved()  # a bad URL or a missing model name: one line, before anything loads
    if settings.triton is not None:
        model.preset_config().require_family("dynamicrafter", "--triton")  # what `dcrt serve` serves
    else:
        model.required_weights()  # a missing checkpoint fails here, not in a worker

    from dcrt.serving.jobs.app import serve_jobs
    from dcrt.serving.jobs.checks import ServedModel
    from dcrt.serving.jobs.director import cannot_describe
    from dcrt.serving.jobs.service import JobService, directors, engines

    triton = settings.triton is not None
    served = ServedModel(model.preset_config(), model.memory, triton, cannot_describe(model, chat))
    jobs = JobService(settings, served, engines(model, settings.triton, log), directors(model, chat, log), log)
    serve_jobs(jobs, settings.host, settings.port, settings.token, settings.max_upload_bytes, log)
