"""The HTTP face of the jobs service (FastAPI: the OpenAPI spec at /openapi.json, its page at /docs).

    POST /v1/jobs                 multipart: `image` (repeat it for key frames) and `request` (JSON: JobRequest)
    GET  /v1/jobs                 the newest jobs, `?status=` filters
    GET  /v1/jobs/{id}            status, queue position, step k of N, stage, timings, error line
    GET  /v1/jobs/{id}/events     the same as server-sent events, until the job ends
    GET  /v1/jobs/{id}/result     the video; with ?scores=true its scores (a job that asked: "score": true)
    POST /v1/jobs/{id}/cancel     a queued job at once, a running one at its next denoising step
    GET  /healthz, GET /metrics   liveness (no token needed) and Prometheus' text format

Every error is `{"error": "<one line>"}` with a 4xx status: bad input 422, unknown job 404, result not ready 409,
body too large 413, queue full 429 with Retry-After, no or wrong token 401.
"""

import asyncio
import hmac
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import TypeAdapter
from starlette.exceptions import HTTPException

from dcrt.director.score import Scores
from dcrt.errors import UsageError
from dcrt.serving.jobs.schema import FINAL, ErrorBody, Health, JobList, JobRequest, JobStatus, Status, one_line
from dcrt.serving.jobs.service import JobNotFound, JobService, ResultNotReady
from dcrt.serving.jobs.store import QueueFull
from dcrt.version import __version__

EVENT_POLL_S = 0.25
SCORES = TypeAdapter(Scores)  # NaN and infinity as null, which JSON can carry
VIDEO_TYPES = {"mp4": "video/mp4", "gif": "image/gif", "webp": "image/webp"}
MAX_LISTED = 1000


def _errors(*codes: int) -> dict:
    return {code: {"model": ErrorBody} for code in codes}


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message.splitlines()[0] if message else "error"}, status, headers)


class BodyLimit:
    """Refuses a POST body over `limit` bytes with 413 before the multipart parser spools it (a Content-Length
    over the limit is refused unread; a chunked body is counted as it comes)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and not declared.isdigit():
            return await _error(400, "Content-Length is not a number of bytes")(scope, receive, send)
        if declared is not None and int(declared) > self.limit:
            return await self._refuse(scope, receive, send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.limit:
                return await self._refuse(scope, receive, send)
        body = b"".join(chunks)

        async def replay():
            nonlocal body
            message, body = {"type": "http.request", "body": body, "more_body": False}, b""
            return message

        return await self.app(scope, replay, send)

    async def _refuse(self, scope, receive, send):
        mib = self.limit / (1 << 20)
        await _error(413, f"the request is over this service's {mib:g} MiB (--max-upload-mb)")(scope, receive, send)


def create_app(jobs: JobService, token: str | None, max_upload_bytes: int) -> FastAPI:
    """The ASGI app over `jobs`, whose workers start with the app (its lifespan) and stop with it. `token`: the
    bearer token every /v1 and /metrics request must carry (None: none)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        jobs.start()
        try:
            yield
        finally:
            await asyncio.to_thread(jobs.stop)

    app = FastAPI(title="dcrt jobs API", version=__version__, lifespan=lifespan, description=__doc__)
    bearer = HTTPBearer(auto_error=False, description="the service's --token, when it has one")

    def authorized(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        given = credentials.credentials if credentials is not None else ""
        if token and not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(401, "a bearer token is required (Authorization: Bearer <token>)")

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(authorized)], responses=_errors(401, 422))

    @v1.post("/jobs", status_code=202, response_model=JobStatus, responses=_errors(400, 413, 429))
    def submit(
        image: Annotated[list[UploadFile], File(description="the image; interpolate: each key frame, in order")],
        request: Annotated[str, Form(description="a JSON object: JobRequest's fields")] = "{}",
    ) -> JobStatus:
        return jobs.submit(request, [part.file.read() for part in image])

    @v1.get("/jobs", response_model=JobList)
    def list_jobs(
        status: Status | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LISTED)] = 100,
    ) -> JobList:
        return JobList(jobs=[jobs.status(job) for job in jobs.store.listed(status, limit)])

    @v1.get("/jobs/{job_id}", response_model=JobStatus, responses=_errors(404))
    def get_job(job_id: str) -> JobStatus:
        return jobs.status(jobs.job(job_id))

    @v1.post("/jobs/{job_id}/cancel", response_model=JobStatus, responses=_errors(400, 404, 413))
    def cancel_job(job_id: str) -> JobStatus:
        return jobs.cancel(job_id)

    videos = {media: {"schema": {"type": "string", "format": "binary"}} for media in VIDEO_TYPES.values()}

    scores_body = {"application/json": {"schema": {"$ref": "#/components/schemas/Scores"}}}

    @v1.get(
        "/jobs/{job_id}/result",
        response_class=FileResponse,
        responses={
            200: {"content": videos | scores_body, "description": "the video (with ?scores=true: its scores)"},
            **_errors(404, 409),
        },
    )
    def job_result(
        job_id: str,
        scores: Annotated[
            bool, Query(description="the video's scores (JSON) instead of the video; the job asked for them")
        ] = False,
    ) -> Response:
        if scores:
            return JSONResponse(SCORES.dump_python(jobs.scores(job_id), mode="json"))
        path, fmt = jobs.result(job_id)
        return FileResponse(path, media_type=VIDEO_TYPES[fmt], filename=f"{job_id}.{fmt}")

    @v1.get(
        "/jobs/{job_id}/events",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}, **_errors(404)},
    )
    def job_events(job_id: str) -> StreamingResponse:
        """`event: status` with a JobStatus each time it changes, the last when the job has ended."""
        jobs.job(job_id)
        return StreamingResponse(_events(jobs, job_id), media_type="text/event-stream")

    app.include_router(v1)

    @app.get("/healthz", response_model=Health)
    def healthz() -> Health:
        counts = jobs.store.counts()
        return Health(
            status="ok", workers=jobs.workers.count, ready=jobs.workers.ready,
            queued=counts.get("queued", 0), running=counts.get("running", 0),
        )  # fmt: skip

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        dependencies=[Depends(authorized)],
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}, **_errors(401)},
    )
    def metrics() -> Response:
        return Response(jobs.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    _handle_errors(app, jobs)
    app.add_middleware(BodyLimit, limit=max_upload_bytes)
    app.openapi = lambda: app.openapi_schema or _with_job_request(app)
    return app


def _with_job_request(app: FastAPI) -> dict:
    """The spec, its POST /v1/jobs `request` part described as what it is: a JobRequest object sent as JSON (FastAPI
    sees a form string)."""
    from fastapi.openapi.utils import get_openapi

    spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schemas = spec["components"]["schemas"]
    job_request = JobRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(job_request.pop("$defs", {}))
    schemas["JobRequest"] = job_request
    body = spec["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]
    form = schemas[body["schema"]["$ref"].rsplit("/", 1)[1]]
    form["properties"]["request"] = {"$ref": "#/components/schemas/JobRequest"}
    body["encoding"] = {"request": {"contentType": "application/json"}}
    app.openapi_schema = spec
    return spec


async def _events(jobs: JobService, job_id: str):
    last = None
    while not jobs.stopping.is_set():
        job = await asyncio.to_thread(jobs.store.get, job_id)
        if job is None:  # removed (--keep) while watched
            return
        text = (await asyncio.to_thread(jobs.status, job)).model_dump_json()
        if text != last:
            yield f"event: status\ndata: {text}\n\n"
            last = text
        if job.status in FINAL:
            return
        await asyncio.sleep(EVENT_POLL_S)


def _handle_errors(app: FastAPI, jobs: JobService) -> None:
    """Every error one line in `{"error": ...}`; a bug is a 500 with one line too, never a traceback."""

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        bearer = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        return _error(exc.status_code, str(exc.detail), bearer)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        return _error(422, one_line(exc.errors()))

    @app.exception_handler(JobNotFound)
    async def not_found(request: Request, exc: JobNotFound):
        return _error(404, str(exc))

    @app.exception_handler(ResultNotReady)
    async def not_ready(request: Request, exc: ResultNotReady):
        return _error(409, str(exc))

    @app.exception_handler(UsageError)
    async def bad_input(request: Request, exc: UsageError):
        return _error(422, str(exc))

    @app.exception_handler(QueueFull)
    async def queue_full(request: Request, exc: QueueFull):
        return _error(429, str(exc), {"Retry-After": str(jobs.retry_after_s())})

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception):
        return _error(500, f"internal error: {type(exc).__name__}: {exc}")


def serve_jobs(
    jobs: JobService, host: str, port: int, token: str | None, max_upload_bytes: int, log: Callable[[str], None]
) -> None:
    """Run the service on HOST:PORT until SIGINT or SIGTERM; running jobs go back in the queue on the way out."""
    import socket

    import uvicorn

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    app = create_app(jobs, token, max_upload_bytes)
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5, lifespan="on")
    log(f"jobs API on http://{host}:{port} (OpenAPI: /docs); Ctrl-C stops")
    uvicorn.Server(config).run(sockets=[sock])
