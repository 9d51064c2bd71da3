"""Load on `dcrt api`: the command started in a child process (its state in a temporary folder, loopback only), N
jobs from C concurrent clients, each client submitting a job, watching its events until it ends, then taking the next.
Every job must succeed, once. Prints p50 / p95 of queue wait (submitted -> a worker took it), job time (the worker's
run: conditioning, sampling, decoding, writing) and latency (submitted -> done), and writes them as JSON with the
conditions (preset, steps, workers, machine, versions). The service is stopped by PID however the run ends.

python benchmarks/jobs_load.py --res tiny --jobs 40 --clients 8 --workers 1 --steps 1
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from dcrt.artifacts.engine_bundle import slug
from dcrt.environment import cpu_name
from dcrt.version import __version__

REPO = Path(__file__).resolve().parents[1]
FINAL = ("succeeded", "failed", "cancelled")


def png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (512, 320), "teal").save(buffer, format="PNG")
    return buffer.getvalue()


def watch(client: httpx.Client, job_id: str, timeout_s: float) -> dict:
    """A job's status once it has ended, from its server-sent events (the stream ends with the job)."""
    status = None
    with client.stream("GET", f"/v1/jobs/{job_id}/events", timeout=timeout_s) as events:
        for line in events.iter_lines():
            if line.startswith("data: "):
                status = json.loads(line[len("data: ") :])
    if status is None or status["status"] not in FINAL:
        raise RuntimeError(f"the events of job {job_id} ended before the job: {status}")
    return status


def run_load(client: httpx.Client, jobs: int, clients: int, request: dict, timeout_s: float = 3600) -> list[dict]:
    """`jobs` jobs from `clients` threads sharing `client`; returns every job's final status, in submission order."""
    image, ended, lock = png(), [None] * jobs, threading.Lock()
    taken = iter(range(jobs))

    def one_client() -> None:
        while True:
            with lock:
                index = next(taken, None)
            if index is None:
                return
            body = json.dumps(request | {"seed": index})
            answer = client.post("/v1/jobs", files=[("image", ("in.png", image, "image/png"))], data={"request": body})
            answer.raise_for_status()
            ended[index] = watch(client, answer.json()["id"], timeout_s)

    threads = [threading.Thread(target=one_client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return ended


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50": statistics.median(ordered), "p95": p95, "max": ordered[-1]}


def summarize(statuses: list[dict]) -> dict[str, dict[str, float]]:
    """p50 / p95 / max of queue wait, job time and latency, in seconds, from the jobs' own timestamps."""
    return {
        "queue_wait_s": percentiles([s["started_at"] - s["created_at"] for s in statuses]),
        "job_s": percentiles([s["finished_at"] - s["started_at"] for s in statuses]),
        "latency_s": percentiles([s["finished_at"] - s["created_at"] for s in statuses]),
    }


def table(summary: dict[str, dict[str, float]]) -> str:
    rows = [f"{'':14}{'p50':>9}{'p95':>9}{'max':>9}"]
    rows += [f"{name:14}" + "".join(f"{row[k]:9.2f}" for k in ("p50", "p95", "max")) for name, row in summary.items()]
    return "\n".join(rows)


def _start(args, state: Path, port: int, log) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    command = [
        sys.executable, "-m", "dcrt", "api", "--res", args.res, "--random-weights", "--backend", args.backend,
        "--device", args.device, "--workers", str(args.workers), "--state", str(state), "--port", str(port),
        "--max-queue", str(max(100, args.jobs)),
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _wait_ready(client: httpx.Client, process: subprocess.Popen, workers: int, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"dcrt api exited with {process.returncode}")
        try:
            if client.get("/healthz").json()["ready"] == workers:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("dcrt api did not get ready")
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--res", default="tiny")
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--guidance-scale", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)

    from dcrt.serving.server import free_port

    port = free_port()
    request = {"prompt": "a boat sailing", "steps": args.steps, "guidance_scale": args.guidance_scale}
    with (
        tempfile.TemporaryDirectory(prefix="dcrt-jobs-load-") as tmp,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client,
    ):
        with open(Path(tmp) / "api.log", "wb") as log:
            process = _start(args, Path(tmp) / "state", port, log)
        try:
            _wait_ready(client, process, args.workers)
            start = time.monotonic()
            statuses = run_load(client, args.jobs, args.clients, request)
            wall = time.monotonic() - start
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
    failed = [s for s in statuses if s["status"] != "succeeded" or s["attempts"] != 1]
    summary = summarize(statuses)
    machine = cpu_name() if args.device == "cpu" else args.device
    report = {
        "kind": "jobs-load",
        "command": "jobs_load.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "preset": args.res, "backend": args.backend, "device": args.device, "steps": args.steps,
        "guidance_scale": args.guidance_scale, "jobs": args.jobs, "clients": args.clients, "workers": args.workers,
        "succeeded": args.jobs - len(failed), "jobs_per_s": args.jobs / wall, "wall_s": wall, **summary,
        "machine": {
            "cpu": cpu_name(), "cpus": os.cpu_count(), "load_average_1m": os.getloadavg()[0],
            "omp_threads": os.environ.get("OMP_NUM_THREADS"), "python": platform.python_version(), "dcrt": __version__,
        },
    }  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / f"jobs-load-{args.res}-{args.workers}w-{slug(machine, 'machine')}.json"
    target.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{args.jobs} jobs from {args.clients} clients, {args.workers} worker(s), {args.res} at {args.steps} step(s) "
          f"on {machine}: {report['succeeded']} succeeded, {report['jobs_per_s']:.2f} jobs/s")  # fmt: skip
    print(table(summary))
    print(f"-> {target}")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
