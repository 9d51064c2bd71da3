"""What the jobs service's tests share: a real service (store, workers, FastAPI on uvicorn) on a loopback port, its
state in tmp_path, its workers running the tiny preset's seeded random weights (one backend for the whole session,
handed to every service in turn: a model load per worker would cost seconds each)."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
from PIL import Image

from dcrt.loading import BackendRequest
from dcrt.serving.jobs.service import JobService

TINY = BackendRequest(preset="tiny", random_weights=True, backend="torch", device="cpu")
# The cheapest real job: one step without guidance (one UNet call). A job that must still be running a while later
# takes many steps and is cancelled or stopped long before its end.
QUICK = {"prompt": "a boat", "steps": 1, "guidance_scale": 1.0}
LONG = {"prompt": "a boat", "steps": 200, "guidance_scale": 1.0}
FINAL = ("succeeded", "failed", "cancelled")
WAIT_S = 300.0  # generous: two cores shared with other work


def png(colour: str = "teal", size: tuple[int, int] = (80, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class Running:
    url: str
    service: JobService
    client: httpx.Client
    log: list[str]  # the service's log lines

    def submit(self, options: dict, images: list[bytes] | None = None, **kwargs) -> httpx.Response:
        import json

        files = [("image", (f"{i}.png", data, "image/png")) for i, data in enumerate(images or [png()])]
        return self.client.post("/v1/jobs", files=files, data={"request": json.dumps(options)}, **kwargs)

    def wait(self, job_id: str, until: Callable[[dict], bool], timeout_s: float = WAIT_S) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.client.get(f"/v1/jobs/{job_id}").json()
            if until(status):
                return status
            assert time.monotonic() < deadline, f"job {job_id} never got there: {status}"
            time.sleep(0.05)

    def finished(self, job_id: str) -> dict:
        return self.wait(job_id, lambda s: s["status"] in FINAL)


@contextmanager
def serving(app, port: int) -> Iterator[str]:
    """`app` on uvicorn on 127.0.0.1:PORT in a thread, its lifespan run; stopped (gracefully) on the way out."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    server.install_signal_handlers = lambda: None  # not the main thread
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the service did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(120)
