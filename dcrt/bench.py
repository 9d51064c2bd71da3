"""What every family's `dcrt bench` shares (each family's own run is dcrt.families.<family>.bench): per-stage timings
of backends on one preset, measured side by side in one run, and the report.

Each backend runs the same generation (same image, prompt, seed, steps) `warmup` + `repeat` times.
A `StageClock` times the stages of a pipeline's generate (conditioning, denoise, decode) and the whole
run; it synchronises the device at stage boundaries only, so a captured denoising loop is timed as a
whole with nothing inside it. The report carries medians, spreads, ms per step, peak memory,
effective UNet TFLOP/s (analytic FLOP count over the denoising time, which includes guidance and the
sampler's update) and every backend's speed-up over the baseline measured in the same run.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from dcrt.environment import cpu_name, nvidia_driver, package_version
from dcrt.version import __version__

STAGES = ("conditioning", "denoise", "decode", "end_to_end")


# What `dcrt bench` can time: the original's way (`BaselineBackend`), and each backend `dcrt.open_backend` opens.
BENCH_BACKENDS = ("baseline", "torch", "ort", "trt", "aoti")


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (no-op on a CPU). Timers call it only between stages."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StageClock:
    """`clock(stage)`: a context manager adding the stage's wall time; the device is synchronised on entry
    and exit, never inside, so a captured CUDA graph replays undisturbed."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        synchronize(self.device)
        start = time.perf_counter()
        yield
        synchronize(self.device)
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start


def peak_memory_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: reset the resident-set high-water mark


def peak_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return process_memory_kib().get("VmHWM", 0) * 1024


def process_memory_kib(pid: int | str = "self") -> dict[str, int]:
    """RssAnon (what the OOM killer counts), RssFile (mapped files, reclaimable) and VmHWM of a process (Linux)."""
    memory = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key = line.split(":")[0]
        if key in ("RssAnon", "RssFile", "VmHWM"):
            memory[key] = int(line.split()[1])
    return memory


class PeakMemory(threading.Thread):
    """Peak RssAnon / RssFile (KiB) of a process while a `with` block runs, sampled every `period` seconds."""

    def __init__(self, pid: int | str = "self", period: float = 0.05):
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.done = threading.Event()

    def __enter__(self) -> PeakMemory:
        self.start_kib = process_memory_kib(self.pid)
        self.peak_kib = {k: self.start_kib[k] for k in ("RssAnon", "RssFile")}
        self.start()
        return self

    def run(self) -> None:
        while not self.done.wait(self.period):
            try:
                now = process_memory_kib(self.pid)
            except OSError:  # the process is gone
                return
            if "RssAnon" not in now:  # it has exited: a zombie has no memory left
                return
            self.peak_kib = {k: max(v, now[k]) for k, v in self.peak_kib.items()}

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.join()

    def anon_rise_gib(self) -> float:
        return (self.peak_kib["RssAnon"] - self.start_kib["RssAnon"]) / 2**20


@dataclass
class BackendResult:
    backend: str
    settings: dict = field(default_factory=dict)  # precision, cuda_graph, fused_kernels, ... (pipeline_settings)
    runs: list[dict[str, float]] = field(default_factory=list)  # seconds per stage, one dict per repeat
    peak_memory_bytes: int = 0
    unet_evaluations_per_run: int = 0  # steps x guidance branches

    def median(self, stage: str) -> float:
        return statistics.median(r.get(stage, 0.0) for r in self.runs)

    def spread(self, stage: str) -> tuple[float, float]:
        values = [r.get(stage, 0.0) for r in self.runs]
        return min(values), max(values)


@dataclass
class BenchReport:
    preset: str
    height: int
    width: int
    steps: int
    repeat: int
    warmup: int
    command: str
    environment: dict
    unet_flops_per_sample: int  # one UNet call on one window of the model's frames
    results: list[BackendResult]
    frames: int = 16  # latent frames of each video (--frames)

    def speedup(self, backend: str, stage: str, baseline: str = "baseline") -> float | None:
        by_name = {r.backend: r for r in self.results}
        if baseline not in by_name or backend not in by_name:
            return None
        mine = by_name[backend].median(stage)
        return by_name[baseline].median(stage) / mine if mine > 0 else None

    def unet_tflops(self, result: BackendResult) -> float:
        """Effective: the UNet's analytic FLOPs over the whole denoising time (guidance and DDIM included)."""
        seconds = result.median("denoise")
        return self.unet_flops_per_sample * result.unet_evaluations_per_run / seconds / 1e12 if seconds else 0.0

    def ms_per_step(self, result: BackendResult) -> float:
        return result.median("denoise") * 1000 / self.steps

    def ms_per_frame(self, result: BackendResult) -> float:
        """End to end over the video's frames: what longer videos cost per frame."""
        return result.median("end_to_end") * 1000 / self.frames

    def to_json(self) -> dict:
        data = asdict(self)
        for entry, result in zip(data["results"], self.results):
            entry["median_s"] = {s: result.median(s) for s in STAGES}
            entry["spread_s"] = {s: list(result.spread(s)) for s in STAGES}
            entry["unet_tflops"] = self.unet_tflops(result)
            entry["ms_per_step"] = self.ms_per_step(result)
            entry["ms_per_frame"] = self.ms_per_frame(result)
            entry["speedup_vs_baseline"] = {s: self.speedup(result.backend, s) for s in STAGES}
        return data


def environment(device: torch.device) -> dict:
    """The conditions a report states: device, versions, commit, and the load the runs meet (dcrt.environment)."""
    env = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU: {cpu_name()}",
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "dcrt": __version__,
        "git_commit": _git_commit(),
        # Other work on the machine skews CPU timings badly (torch's threads wait on each other): stated.
        "load_average_1min": os.getloadavg()[0],
        "cpu_cores": os.cpu_count(),
    }
    for module in ("onnxruntime", "tensorrt"):
        env[module] = package_version(module)[0]
    if device.type == "cuda":
        env["driver"] = nvidia_driver()
    return env


def busy_machine(env: dict) -> bool:
    """A 1-minute load above 3/4 of the cores before the first run: other work competes for the CPU."""
    return env.get("load_average_1min", 0.0) > 0.75 * (env.get("cpu_cores") or 1)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent)
        return out.stdout.strip() or None
    except OSError:
        return None


def markdown(report: BenchReport) -> str:
    head = ["backend", "graph", "fused"] + [f"{s} (s)" for s in STAGES]
    head += ["ms/step", "ms/frame", "UNet TFLOP/s", "peak mem (GiB)", "end-to-end vs baseline"]
    lines = [
        f"**{report.preset}** at {report.height}x{report.width}, {report.frames} frames, {report.steps} steps, "
        f"median of {report.repeat} "
        f"(after {report.warmup} warm-up) on {report.environment['device']}",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    if busy_machine(report.environment):
        lines.insert(
            1,
            f"\n(the machine was busy when this started: load {report.environment['load_average_1min']:.1f} "
            f"on {report.environment['cpu_cores']} cores; CPU timings are unreliable)",
        )
    for r in report.results:
        flags = ["yes" if r.settings.get(k) else "no" for k in ("cuda_graph", "fused_kernels")]
        cells = [r.backend, *flags] + [f"{r.median(s):.3f}" for s in STAGES]
        speed = report.speedup(r.backend, "end_to_end")
        cells += [
            f"{report.ms_per_step(r):.1f}",
            f"{report.ms_per_frame(r):.1f}",
            f"{report.unet_tflops(r):.3f}",
            f"{r.peak_memory_bytes / 2**30:.2f}",
            f"{speed:.2f}x" if speed else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def chart(report: BenchReport, path: Path) -> None:
    """Per-stage bars per backend as a PNG (PIL only: no plotting dependency)."""
    from PIL import Image, ImageDraw

    stages = STAGES
    colours = [(76, 114, 176), (221, 132, 82), (85, 168, 104), (196, 78, 82), (129, 114, 179), (147, 120, 96)]
    row, bar, left, width = 26, 18, 190, 560
    height = 50 + row * len(stages) * len(report.results) + 20 * len(stages)
    img = Image.new("RGB", (left + width + 110, height), "white")
    draw = ImageDraw.Draw(img)
    draw.text(
        (10, 10),
        f"dcrt bench: {report.preset} {report.height}x{report.width}, {report.steps} steps, "
        f"{report.environment['device']}",
        fill="black",
    )
    longest = max((r.median(s) for r in report.results for s in stages), default=1.0) or 1.0
    y = 40
    for stage in stages:
        draw.text((10, y), stage, fill="black")
        for k, r in enumerate(report.results):
            seconds = r.median(stage)
            length = int(width * seconds / longest)
            draw.rectangle([left, y, left + max(length, 1), y + bar], fill=colours[k % len(colours)])
            draw.text((left + length + 6, y + 3), f"{r.backend} {seconds:.3f} s", fill="black")
            y += row
        y += 20
    img.save(path)


def write_report(report: BenchReport, out_dir: Path) -> list[Path]:
    from dcrt.atomic import atomic_file

    out_dir.mkdir(parents=True, exist_ok=True)
    device = report.environment["device"].replace("CPU: ", "cpu-").split("@")[0].strip()
    slug = "".join(c if c.isalnum() else "-" for c in device.lower()).strip("-")
    # The time in the name: a new report never replaces an earlier one (committed results included).
    stamp = time.strftime("%Y%m%d-%H%M%S")
    stem = f"bench-{report.preset}-{report.height}x{report.width}-{slug}-{stamp}"
    paths = [out_dir / f"{stem}.json", out_dir / f"{stem}.md", out_dir / f"{stem}.png"]
    with atomic_file(paths[0]) as tmp:
        tmp.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    with atomic_file(paths[1]) as tmp:
        tmp.write_text(markdown(report) + "\n")
    with atomic_file(paths[2], suffix=".png") as tmp:
        chart(report, tmp)
    return paths


def backend_class(backend) -> str:
    """What ran, for the report: the backend's class, and for a family adapter over a graph runtime, the runtime's
    (`StaticShapeBackend(OnnxRuntimeGraphs)`)."""
    graphs = getattr(backend, "graphs", None)
    return type(backend).__name__ + (f"({type(graphs).__name__})" if graphs is not None else "")


def timed_runs(
    result: BackendResult,
    device: torch.device,
    run: Callable[[StageClock], None],
    warmup: int,
    repeat: int,
    log: Callable[[str], None],
    derive: Callable[[dict[str, float]], None] = lambda seconds: None,
) -> BackendResult:
    """`run(clock)` (one generation, its stages timed on `clock`) `warmup + repeat` times: the repeats' stage times
    and the peak memory after the warm-up go into `result`. `derive(seconds)` adds stages computed from the timed
    ones, once the whole run is timed."""
    for i in range(warmup + repeat):
        if i == warmup:
            peak_memory_reset(device)
        clock = StageClock(device)
        with clock("end_to_end"):
            run(clock)
        derive(clock.seconds)
        if i >= warmup:
            result.runs.append(clock.seconds)
        note = "(warm-up) " if i < warmup else ""
        log(f"{result.backend}: run {i + 1}/{warmup + repeat} {note}{clock.seconds['end_to_end']:.2f} s")
    result.peak_memory_bytes = peak_memory_bytes(device)
    return result
