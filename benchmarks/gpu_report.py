"""The one command to run first whenever a GPU is available: the GPU tests, then every sampling mode at full size.

    python benchmarks/gpu_report.py --out DIR [--budget 400] [--sections NAME,...] [--work DIR]
    python benchmarks/gpu_report.py --dry-run --out DIR         # CPU, tiny presets: proves the script itself (CI)
    python benchmarks/gpu_report.py --sections aoti --out DIR   # one section on its own, with the whole budget

Sections run in this order, each by name (`--sections` picks some; `section_names`): `kernels` (NVRTC compile +
load), `gpu-tests` (`pytest -m gpu` without HEAVY_GPU_TESTS: the kernel and runner tests), one per preset
(`--presets`; benchmarks/gpu_report_modes.py), `long-video`, Stable Video Diffusion's (`--svd`; gpu_report_svd.py),
`aoti` (AOTInductor CUDA packages built on the device; gpu_report_aoti.py) and `gpu-host` (HEAVY_GPU_TESTS: the C++
host's CUDA build, only where cmake, nvcc, a C++ compiler and png.h are found, else recorded "not run: why"). A
section that would start with less than its reserve (RESERVE_S) of the budget left is recorded as skipped; past
budget + WATCHDOG_GRACE_S a watchdog records where the run stood, ends the pytest children and exits (code 3).

This file imports only the standard library: it creates DIR and writes gpu-report.json (the command) before it
imports torch, dcrt and the section modules, so a failed import is recorded there with its traceback's last lines
(status "failed: import ...", exit code 4). DIR receives only small files, flat: gpu-report.json (rewritten after
every measurement), gpu-report.log, gpu-report.md at the end, and <section>.xml / <section>.log per pytest child.
Packages, caches and build folders go to the work folder: --work (kept), or a fresh temporary folder outside DIR,
removed at the end (left behind only when the watchdog ends the run).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the GPU machine runs from a checkout, without installing dcrt

# The default budget and the watchdog's grace fit one 8-minute device command, wheel install to last file:
# ~15 s of install and imports + 400 s + 30 s = ~445 s < 480 s (README.md, "On a GPU machine").
DEFAULT_BUDGET_S = 400.0
WATCHDOG_GRACE_S = 30.0
# Seconds of budget a section needs to start (rough full-size costs on an H200, never all measured; the rest is
# skipped by name). A preset's mode needs its preset's reserve / len(MODES): 9 modes (3 of them the memory profiles,
# gpu_report_modes.MODES), so the presets' reserves are 1.5 times those of the 6 modes before, ~13 s a mode at 512.
# SVD's section runs 4 modes (gpu_report_svd.MODES: low beside the 3 before).
RESERVE_S = {
    **{"kernels": 20, "gpu-tests": 60, "tiny": 15, "256": 60, "512": 90, "1024": 180, "tooncrafter": 90},
    **{"long-video": 60, "svd-xt": 200, "tiny-svd": 15},
    "aoti": 240,  # one full-size UNet package compiled on the device, then timed and captured
    "gpu-host": 240,  # CMake + nvcc build of the host, and the tiny preset's six CUDA packages
}
DEFAULT_RESERVE_S = 60
# In the order they are measured, so a short budget keeps the first: 512 (the most used), then ToonCrafter (its
# 10 GB target has never been measured), then the others.
DEFAULT_PRESETS = "512,tooncrafter,256,1024"
# Builds that cannot share the fast tests' timeout: they run in their own section, `gpu-host`, after the rest.
HEAVY_GPU_TESTS = ("tests/test_cpp_host.py::test_host_on_cuda_equals_python",)
GPU_TESTS_TIMEOUT_S = 150.0  # `gpu-tests` (--tests-timeout); each child's timeout is also held to the budget left
HOST_TIMEOUT_S = 300.0
PER_TEST_TIMEOUT_S = 60  # pytest-timeout's, where installed: one hung test fails alone, not the whole section
INTERRUPT_GRACE_S = 10.0  # after SIGINT, for pytest to write its junit XML and summary before SIGKILL


class NotRun(Exception):
    """A section that cannot run here (a missing tool): recorded as "not run: why", not as a failure."""


class Report:
    """The JSON document, rewritten atomically after every measurement, and a log beside it."""

    def __init__(self, out: Path, budget_s: float):
        self.out = out
        self.started = time.monotonic()
        self.budget_s = budget_s
        self.data: dict = {"status": "running", "sections": {}}
        self.section, self.section_started = "start", self.started
        self.children: set[int] = set()  # process groups of running children: the watchdog ends them
        self.render: Callable[[dict], str] | None = None  # the Markdown table, once the torch side is imported
        out.mkdir(parents=True, exist_ok=True)
        self._log = (out / "gpu-report.log").open("w")

    def close(self) -> None:
        self._log.close()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def left(self) -> float:
        return self.budget_s - self.elapsed()

    def reserve_s(self, name: str) -> float:
        return RESERVE_S.get(name, DEFAULT_RESERVE_S)

    def log(self, message: str) -> None:
        line = f"{self.elapsed():7.1f} s  [{self.section}] {message}"
        print(line, flush=True)
        self._log.write(line + "\n")
        self._log.flush()

    def save(self) -> None:
        self.data["elapsed_s"] = round(self.elapsed(), 1)
        tmp = self.out / "gpu-report.json.tmp"
        tmp.write_text(json.dumps(self.data, indent=2, default=_jsonable) + "\n")
        tmp.replace(self.out / "gpu-report.json")

    def record(self, *path: str, value) -> None:
        node = self.data["sections"]
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
        self.save()

    def run_section(self, name: str, body: Callable[[], None]) -> None:
        """Run `body` unless less than its reserve of the budget is left; a failure is recorded, not raised."""
        self.section, self.section_started = name, time.monotonic()
        left, reserve = self.left(), self.reserve_s(name)
        if left < reserve:
            self.log(f"skipped: {left:.0f} s of the budget left, {reserve} s needed to start")
            self.record(name, "status", value=f"skipped (budget: {left:.0f} s left, {reserve} s needed)")
            return
        self.record(name, "status", value="running")
        try:
            body()
            status = "done"
        except NotRun as exc:
            self.log(f"not run: {exc}")
            status = f"not run: {exc}"
        except Exception as exc:  # the report goes on with the next section
            self.log("FAILED:\n" + traceback.format_exc())
            status = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        self.record(name, "seconds", value=round(time.monotonic() - self.section_started, 1))
        self.record(name, "status", value=status)

    def write_markdown(self) -> None:
        if self.render is not None:
            (self.out / "gpu-report.md").write_text(self.render(self.data))


def _jsonable(value):
    item = getattr(value, "item", None)  # numpy and torch scalars
    return item() if callable(item) else str(value)


def start_watchdog(report: Report, grace_s: float) -> threading.Timer:
    """Past budget + grace: record where the run stood, end the children and exit (a hang must not eat the lease)."""

    def expire() -> None:
        for group in list(report.children):
            _signal_group(group, signal.SIGKILL)
        in_section = time.monotonic() - report.section_started
        report.data["status"] = f"aborted: over budget in section {report.section} after {in_section:.0f} s in it"
        report.log(report.data["status"])
        report.save()
        report.write_markdown()
        os._exit(3)

    timer = threading.Timer(report.budget_s + grace_s, expire)
    timer.daemon = True
    timer.start()
    return timer


# --- child processes: pytest runs apart, so a crash or a hang there cannot take the report down -----------


@dataclass(frozen=True)
class ChildResult:
    code: int | None  # None: ended on timeout
    output: str


def run_child(report: Report, cmd: list[str], log: Path, timeout_s: float) -> ChildResult:
    """`cmd` in a session (process group) of its own, its output in `log`. Past `timeout_s` the whole group gets
    SIGINT (pytest then writes its junit XML and summary), then SIGKILL after INTERRUPT_GRACE_S; the group is
    ended after a normal exit too, so no grandchild (cmake, nvcc, Inductor's workers) skews later timings."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    with log.open("w") as sink:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        report.children.add(proc.pid)  # the session's id is the child's pid
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            code = None
            _signal_group(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=INTERRUPT_GRACE_S)
            except subprocess.TimeoutExpired:
                pass
        finally:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
            report.children.discard(proc.pid)
    return ChildResult(code, log.read_text(errors="replace"))


def _signal_group(group: int, sig: int) -> None:
    try:
        os.killpg(group, sig)
    except ProcessLookupError:  # nothing left in the group
        pass


def child_section(report: Report, name: str, cmd: list[str], timeout_s: float) -> None:
    """Run `cmd` as section `name`'s child; record its command, exit, summary line and every test not passed."""
    report.record(name, "command", value=" ".join(cmd[1:]))
    report.log(f"{' '.join(cmd[1:])} (timeout {timeout_s:.0f} s)")
    result = run_child(report, cmd, report.out / f"{name}.log", timeout_s)
    code = result.code if result.code is not None else f"timeout after {timeout_s:.0f} s (process group ended)"
    summary = [line for line in result.output.strip().splitlines() if line.strip()][-1:] or ["(no output)"]
    report.record(name, "exit_code", value=code)
    report.record(name, "summary", value=summary[0])
    outcomes = ("FAILED", "ERROR", "SKIPPED")  # a skip with a GPU present hides a test: listed, never quiet
    not_passed = [line for line in result.output.splitlines() if line.startswith(outcomes)]
    report.record(name, "not_passed", value=not_passed)
    report.log(f"exit {code}: {summary[0]}")
    if code != 0:
        raise RuntimeError(f"{name}: exit {code}: {summary[0]}")


def pytest_command(report: Report, name: str, selection: list[str], collect_only: bool) -> list[str]:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report.out / name}.xml"]
    if importlib.util.find_spec("pytest_timeout"):
        cmd.append(f"--timeout={PER_TEST_TIMEOUT_S}")
    return [*cmd, "-rfEs", "-m", "gpu", *selection] + (["--collect-only"] if collect_only else [])


def gpu_tests_section(report: Report, dry_run: bool, timeout_s: float) -> None:
    """`pytest -m gpu` but HEAVY_GPU_TESTS: the kernel and runner tests first; collect-only on a dry run."""
    deselect = [f"--deselect={test}" for test in HEAVY_GPU_TESTS]
    cmd = pytest_command(report, "gpu-tests", ["tests", *deselect], dry_run)
    child_section(report, "gpu-tests", cmd, min(timeout_s, max(report.left(), 1.0)))


def gpu_host_section(report: Report, dry_run: bool) -> None:
    """HEAVY_GPU_TESTS where their tools are found (else "not run: why"); collect-only on a dry run."""
    missing = host_prerequisites()
    report.record("gpu-host", "missing", value=missing)
    if missing and not dry_run:
        raise NotRun("; ".join(missing))
    cmd = pytest_command(report, "gpu-host", list(HEAVY_GPU_TESTS), dry_run)
    child_section(report, "gpu-host", cmd, min(HOST_TIMEOUT_S, max(report.left(), 1.0)))


def host_prerequisites() -> list[str]:
    """What the C++ host's CUDA build needs and this machine lacks (its CMake's find_package(PNG) wants png.h)."""
    missing = [f"{tool} not on PATH" for tool in ("cmake", "nvcc") if shutil.which(tool) is None]
    if not any(shutil.which(compiler) for compiler in ("c++", "g++", "clang++")):
        missing.append("no C++ compiler (c++, g++, clang++) on PATH")
    paths = [os.environ.get(v, "") for v in ("CPATH", "CPLUS_INCLUDE_PATH")]
    folders = ["/usr/include", "/usr/local/include", *(p for v in paths for p in v.split(os.pathsep) if p)]
    if not any((Path(folder) / "png.h").is_file() for folder in folders):
        missing.append("png.h not found (libpng headers: apt-get install libpng-dev)")
    return missing


# --- main ---------------------------------------------------------------------------------------


def section_names(args: argparse.Namespace) -> list[str]:
    """Every section of a run with these arguments, in the order they run."""
    return ["kernels", "gpu-tests", *args.presets, "long-video", args.svd, "aoti", "gpu-host"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the JSON, logs, junit XML, Markdown")
    budget = f"seconds for the whole report (default {DEFAULT_BUDGET_S:.0f}; the watchdog: +{WATCHDOG_GRACE_S:.0f})"
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S, help=budget)
    parser.add_argument("--sections", default=None, help="comma-separated section names to run (default: all)")
    parser.add_argument(
        "--work", type=Path, default=None, help="folder for packages and builds, kept (default: a temporary one)"
    )
    parser.add_argument(
        "--presets", default=None, help=f"comma-separated (default {DEFAULT_PRESETS}; tiny on --dry-run)"
    )
    parser.add_argument("--steps", type=int, default=None, help="measured steps per run (default 4; 2 on --dry-run)")
    parser.add_argument("--long-video", default=None, help="preset of the long video (default 512; tiny: --dry-run)")
    parser.add_argument(
        "--long-video-frames", type=int, default=None, help="frames of the long video (default 64; 32: --dry-run)"
    )
    parser.add_argument("--svd", default=None, help="SVD preset of its section (default svd-xt; tiny-svd: --dry-run)")
    tests = f"seconds for `gpu-tests` (default {GPU_TESTS_TIMEOUT_S:.0f})"
    parser.add_argument("--tests-timeout", type=float, default=GPU_TESTS_TIMEOUT_S, help=tests)
    parser.add_argument("--aoti-preset", default=None, help="preset of the aoti section (default 512; tiny: --dry-run)")
    parser.add_argument("--dry-run", action="store_true", help="on the CPU with the tiny presets: checks this script")
    args = parser.parse_args(argv)
    tiny = args.dry_run
    args.presets = (args.presets or ("tiny" if tiny else DEFAULT_PRESETS)).split(",")
    args.steps = args.steps or (2 if tiny else 4)
    args.long_video = args.long_video or ("tiny" if tiny else "512")
    # The dry run's 3 windows (the middle one overlapped on both sides) prove the windowing as 7 do, in half the
    # CPU time: its fp16 decode takes most of the dry run (no fast fp16 convolution on a CPU).
    args.long_video_frames = args.long_video_frames or (32 if tiny else 64)
    args.svd = args.svd or ("tiny-svd" if tiny else "svd-xt")
    args.aoti_preset = args.aoti_preset or ("tiny" if tiny else "512")
    names = section_names(args)
    args.sections = args.sections.split(",") if args.sections else names
    unknown = [name for name in args.sections if name not in names]
    if unknown:
        parser.error(f"--sections: no section {', '.join(unknown)}; this run's sections: {', '.join(names)}")
    args.sections = [name for name in names if name in args.sections]  # the run's order
    if args.work is not None and args.work.resolve().is_relative_to(args.out.resolve()):
        parser.error("--work must be outside --out (--out receives only small files)")
    return args


@contextmanager
def work_folder(given: Path | None) -> Iterator[Path]:
    """The --work folder (kept), or a fresh temporary one outside --out, removed at the end (GBs of packages)."""
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given
        return
    path = Path(tempfile.mkdtemp(prefix="gpu-report-work-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def import_torch_side(report: Report):
    """benchmarks/gpu_report_modes.py (torch, dcrt, the section modules), or None with the failure recorded."""
    try:
        return importlib.import_module("gpu_report_modes")
    except Exception as exc:  # ImportError, or e.g. an OSError from a CUDA library: all recorded
        first = str(exc).splitlines()[0] if str(exc) else ""
        report.data["status"] = f"failed: import: {type(exc).__name__}: {first}"
        report.data["import_error"] = traceback.format_exc().strip().splitlines()[-12:]
        report.log(report.data["status"])
        report.save()
        return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = Report(args.out, args.budget)
    report.data["command"] = " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])
    report.data |= {"dry_run": args.dry_run, "sections_selected": args.sections, "python": platform.python_version()}
    report.save()  # before anything can fail
    watchdog = start_watchdog(report, WATCHDOG_GRACE_S)
    try:
        return run_report(report, args)
    finally:
        watchdog.cancel()
        report.close()


def run_report(report: Report, args: argparse.Namespace) -> int:
    modes = import_torch_side(report)
    if modes is None:
        return 4
    refusal = modes.preset_error(args)
    device = modes.device_for(args.dry_run)
    if refusal or device is None:
        refusal = refusal or "no CUDA GPU visible (use --dry-run to check the script on a CPU)"
        report.data["status"] = f"failed: {refusal}"
        report.save()
        print(f"gpu_report: error: {refusal}", file=sys.stderr)
        return 2
    modes.record_environment(report, device)
    report.render = modes.markdown
    with work_folder(args.work) as work:
        report.data["work"] = str(work)
        bodies = modes.section_bodies(report, args, device, work)
        bodies["gpu-tests"] = lambda: gpu_tests_section(report, args.dry_run, args.tests_timeout)
        bodies["gpu-host"] = lambda: gpu_host_section(report, args.dry_run)
        for name in args.sections:
            report.run_section(name, bodies[name])
    report.section = "end"
    done = ("done", "skipped", "not run")
    failed = [n for n, s in report.data["sections"].items() if not str(s.get("status")).startswith(done)]
    report.data["status"] = f"failed sections: {', '.join(failed)}" if failed else "done"
    report.save()
    report.write_markdown()
    print(modes.markdown(report.data))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
