"""`dcrt api`: an asynchronous jobs service in front of the engine. Submit a job and get its id at once; watch its
status (queue position, step k of N) or its server-sent events; cancel it; fetch its video; get a signed webhook.
Jobs, inputs and results live on disk, so a crash loses nothing.

settings.py   ApiSettings: state folder, address, token, workers, retention, limits, webhooks (the CLI's options)
schema.py     the request and response bodies (pydantic; the OpenAPI spec comes from them)
checks.py     a request checked as the command line checks its options, plus the service's limits (torch-free)
store.py      SQLite (WAL) and a folder per job; crash recovery and retention
workers.py    worker threads, one engine each; progress and cancel through the pipeline's on_step
webhooks.py   allow-listed, HMAC-signed, retried deliveries
metrics.py    the Prometheus registry
service.py    JobService: the parts above started and stopped together; what each route asks
app.py        the FastAPI app (routes, bearer token, body limit, one-line errors) and `serve_jobs` (uvicorn)
"""
