"""The jobs service's fixtures: one tiny backend for the session, and services on loopback ports (tests/serving/jobs/
_service.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from dcrt.presets import get_preset
from dcrt.serving.jobs.app import create_app
from dcrt.serving.jobs.checks import ServedModel
from dcrt.serving.jobs.service import JobService, directors, engines
from dcrt.serving.jobs.settings import ApiSettings
from dcrt.serving.jobs.workers import InProcessEngine
from dcrt.serving.server import free_port
from tests.serving.jobs._service import TINY, Running, serving


@pytest.fixture(scope="session")
def tiny_engine() -> InProcessEngine:
    from dcrt.loading import open_backend

    return InProcessEngine(open_backend(TINY))


@pytest.fixture
def start_service(tmp_path: Path, tiny_engine) -> Iterator[Callable[..., Running]]:
    """start_service(**ApiSettings fields, llm=a resolved LLMRequest, engine=another than the session's) -> a
    Running service on a loopback port (stopped after the test)."""
    with ExitStack() as stack:

        def start(state: Path | None = None, headers: dict | None = None, llm=None, engine=None, **changes) -> Running:
            settings = replace(ApiSettings(state=state or tmp_path / "state", port=free_port()), **changes)
            settings.check()
            served = ServedModel(get_preset("tiny"), "auto", triton=settings.triton is not None)
            log: list[str] = []
            # with --triton, the command's own engines; else the one given, or the session's backend
            engine = engine or tiny_engine
            open_engine = engines(TINY, settings.triton, log.append) if settings.triton else lambda i: engine
            service = JobService(settings, served, open_engine, directors(TINY, llm, log.append), log.append)
            app = create_app(service, settings.token, settings.max_upload_bytes)
            url = stack.enter_context(serving(app, settings.port))
            client = stack.enter_context(httpx.Client(base_url=url, timeout=60, headers=headers))
            return Running(url, service, client, log)

        yield start
