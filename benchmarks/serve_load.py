"""Load on `dcrt serve`: a tritonserver on a dcrt repository (the [serve] extra), N requests from C client threads;
prints requests/s and p50 / p95 latency and writes JSON (with the conditions: preset, steps, batching, instances,
CPU, versions). Loopback only; the server is stopped by PID however the run ends.

python benchmarks/serve_load.py --res tiny --requests 32 --concurrency 8 --steps 5 --out serve-load.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dcrt.families.dynamicrafter.options import SamplingRequest
from dcrt.loading import BackendRequest
from dcrt.serving.client import generate_remote
from dcrt.serving.repository import ServeOptions, write_repository
from dcrt.serving.server import free_port, start_server
from dcrt.version import __version__

REPO = Path(__file__).resolve().parents[1]


def png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (512, 320), "teal").save(buffer, format="PNG")
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--res", default="tiny")
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument("--max-batch", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("serve-load.json"))
    args = parser.parse_args()

    request = BackendRequest(preset=args.res, random_weights=True, backend=args.backend, device=args.device)
    serve = ServeOptions(instances=args.instances, max_batch=args.max_batch, max_queue=max(16, args.requests))
    image = png()
    with tempfile.TemporaryDirectory(prefix="dcrt-load-") as tmp:
        write_repository(Path(tmp), request, serve, python_path=[str(REPO)])
        with open(Path(tmp) / "server.log", "wb") as log:
            server = start_server(Path(tmp), port=free_port(), log=log)
        try:
            server.wait_ready(timeout_s=180)
            sampling = SamplingRequest(steps=args.steps)
            generate_remote(server.url, [image], "warm-up", sampling=sampling)  # the first call loads lazily

            def one(i: int) -> float:
                start = time.perf_counter()
                generate_remote(server.url, [image], f"request {i}", sampling=SamplingRequest(steps=args.steps, seed=i))
                return time.perf_counter() - start

            start = time.perf_counter()
            with ThreadPoolExecutor(args.concurrency) as pool:
                latencies = sorted(pool.map(one, range(args.requests), timeout=1800))
            wall = time.perf_counter() - start
        finally:
            server.stop()
    p50 = statistics.median(latencies)
    p95 = latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))]
    report = {
        "kind": "serve-load",
        "preset": args.res,
        "backend": args.backend,
        "device": args.device,
        "steps": args.steps,
        "requests": args.requests,
        "concurrency": args.concurrency,
        "instances": args.instances,
        "max_batch": args.max_batch,
        "requests_per_s": args.requests / wall,
        "latency_s": {"p50": p50, "p95": p95, "max": latencies[-1]},
        "wall_s": wall,
        "environment": {
            "cpu": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "omp_threads": os.environ.get("OMP_NUM_THREADS"),
            "python": platform.python_version(),
            "dcrt": __version__,
        },
    }
    args.out.write_text(json.dumps(report, indent=2))
    print(f"{args.requests} requests, {args.concurrency} at a time, {args.res} at {args.steps} steps on {args.device}:")
    print(f"  {report['requests_per_s']:.2f} requests/s, latency p50 {p50:.2f} s, p95 {p95:.2f} s -> {args.out}")


if __name__ == "__main__":
    main()
