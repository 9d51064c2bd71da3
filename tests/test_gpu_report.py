"""benchmarks/gpu_report.py, proven on the CPU before a GPU ever runs it.

The dry run goes through every section and mode with the tiny preset, in a child process where the
packages that the lent GPU machine lacks cannot be imported, so an import or logic error shows up here
and not in the 15 minutes of GPU time. Its budget is one a slow machine cannot exhaust; a separate test
proves the budget skipping. No test here asserts on speed.

The default suite runs the dry run without MODE_SECTIONS (every import, the pytest children, SVD, AOTInductor, the
files written); the tests on the modes' CPU measurements run the whole dry run and are marked heavy. By default
every mode's wiring still runs on a simulated CUDA device (tests/test_simulated_cuda.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import gpu_report  # noqa: E402
import gpu_report_modes as modes  # noqa: E402

# Not on the lent GPU machine (its image's package list, 2026-11) and not carried by benchmarks/gpu_wheels.sh.
MISSING_ON_THE_GPU_MACHINE = (
    *("imageio_ffmpeg", "onnx_graphsurgeon", "kornia", "tensorrt", "polygraphy"),
    *("gradio", "gradio_client", "tritonclient", "pytriton", "playwright"),  # the [serve], [ui] extras; a test tool
)

# Hides the packages from the path finder: `import x` fails and importlib.util.find_spec(x) is None, as
# where they are not installed (torch probes optional modules with find_spec).
BLOCKER = textwrap.dedent(
    """
    import importlib.machinery, os, sys

    _MISSING = set(os.environ["DCRT_TEST_MISSING_MODULES"].split(","))

    class _PathFinderWithout(importlib.machinery.PathFinder):
        @classmethod
        def find_spec(cls, name, path=None, target=None):
            if name.split(".")[0] in _MISSING:
                return None
            return importlib.machinery.PathFinder.find_spec(name, path, target)

    sys.meta_path[:] = [_PathFinderWithout if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
    """
)


EVERY_SECTION = ["kernels", "gpu-tests", "tiny", "long-video", "tiny-svd", "aoti", "gpu-host"]
# The sections that measure the tiny preset's modes on the CPU, most of them in fp16: ~2 of the whole dry run's ~3
# minutes on 2 cores (a CPU has no fast fp16 convolution; its decodes take most of it).
MODE_SECTIONS = ("tiny", "long-video")
WITHOUT_MODES = [name for name in EVERY_SECTION if name not in MODE_SECTIONS]


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """The whole dry run, for the module's heavy tests: (exit code, output, report JSON, out dir)."""
    return _dry_run(tmp_path_factory, EVERY_SECTION)


@pytest.fixture(scope="module")
def dry_run_without_modes(tmp_path_factory):
    """The dry run without MODE_SECTIONS, for the module's default tests: as `dry_run`."""
    return _dry_run(tmp_path_factory, WITHOUT_MODES)


def _dry_run(tmp_path_factory, sections: list[str]):
    site = tmp_path_factory.mktemp("site")
    (site / "sitecustomize.py").write_text(BLOCKER)  # also reaches the `pytest -m gpu` child it starts
    out = tmp_path_factory.mktemp("gpu-report")
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(site), str(REPO)]),
        DCRT_TEST_MISSING_MODULES=",".join(MISSING_ON_THE_GPU_MACHINE),
    )
    cmd = [sys.executable, str(REPO / "benchmarks" / "gpu_report.py"), "--dry-run", "--out", str(out)]
    cmd += ["--budget", "100000"]  # neither a section's reserve nor the watchdog can run out on a busy machine
    if sections != EVERY_SECTION:
        cmd += ["--sections", ",".join(sections)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1100)
    data = json.loads((out / "gpu-report.json").read_text())
    return proc.returncode, proc.stdout + proc.stderr, data, out


def test_the_missing_packages_are_hidden_in_the_child(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ, PYTHONPATH=str(site), DCRT_TEST_MISSING_MODULES="json,imageio_ffmpeg")
    code = "import importlib.util, sys\ntry:\n    import json\nexcept ImportError:\n    sys.exit(7)"
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 7


@pytest.mark.parametrize(
    "run, sections",
    [("dry_run_without_modes", WITHOUT_MODES), pytest.param("dry_run", EVERY_SECTION, marks=pytest.mark.heavy)],
)
def test_dry_run_passes_every_section_without_the_missing_packages(run, sections, request):
    code, output, data, out = request.getfixturevalue(run)
    assert code == 0, output[-3000:]
    assert data["status"] == "done" and data["dry_run"] is True
    assert {name: s["status"] for name, s in data["sections"].items()} == dict.fromkeys(sections, "done")
    assert "collected" in data["sections"]["gpu-tests"]["summary"]  # every -m gpu test module imports there
    assert "deselected" in data["sections"]["gpu-tests"]["summary"]  # the heavy build runs in gpu-host
    assert "1 test collected" in data["sections"]["gpu-host"]["summary"]
    for name in ("gpu-report.json", "gpu-report.md", "gpu-report.log", "gpu-tests.xml", "gpu-tests.log"):
        assert (out / name).is_file(), name


def test_dry_run_out_holds_only_small_files_and_the_work_folder_is_removed(dry_run_without_modes):
    _, _, data, out = dry_run_without_modes
    files = [path for path in out.rglob("*") if path.is_file()]
    assert len(files) <= 8  # what the device tool brings back: 8 files of 16 MiB, 2 folders deep at most
    for path in files:
        assert path.suffix in {".json", ".md", ".log", ".xml"} and path.stat().st_size < 16 * 2**20, path
        assert len(path.relative_to(out).parts) <= 2, path
    assert not Path(data["work"]).is_relative_to(out) and not Path(data["work"]).exists()


@pytest.mark.heavy
def test_dry_run_measures_a_long_video_beside_a_short_one(dry_run):
    _, _, data, _ = dry_run
    # The work by its windows, not its seconds: on a busy 2-core machine the 16-frame run once took as long as the
    # 32-frame one. The frames reach the pipeline: tests/test_simulated_cuda.py's long video.
    labels = [f"{modes.LONG_VIDEO_MODE}, {frames} frames ({windows} windows)" for frames, windows in ((16, 1), (32, 3))]
    assert list(data["sections"]["long-video"]["modes"]) == labels  # the dry run's --long-video-frames
    runs = list(data["sections"]["long-video"]["modes"].values())
    assert all(run["latents_finite"] and run["seconds"]["denoise"] > 0 and run["ms_per_frame"] > 0 for run in runs)


@pytest.mark.heavy
def test_dry_run_measures_every_mode_and_comparison(dry_run):
    _, output, data, _ = dry_run
    tiny = data["sections"]["tiny"]
    assert list(tiny["modes"]) == [m.name for m in modes.MODES]
    gpu_only = {m.name for m in modes.MODES if m.gpu_only}
    assert gpu_only == {"whole-blocks-fp16"}
    for name, mode in tiny["modes"].items():
        if name in gpu_only:
            assert mode.startswith("not run on --dry-run"), f"{name}: {mode}"
            continue
        assert isinstance(mode, dict), f"{name}: {mode}"
        assert mode["ms_per_step"] > 0 and mode["peak_memory_gib"] > 0 and mode["latents_finite"], name
        computed = mode[f"computed_{modes.STEPS_COMPUTED}_step_s"]
        assert computed > mode["seconds"]["end_to_end"] - mode["seconds"]["denoise"], name
    assert tiny["modes"]["baseline"]["cuda_graph"] is False and tiny["modes"]["baseline"]["fused_kernels"] is None
    assert tiny["modes"]["graph-fused-bf16"]["fused_kernels"] == "ReferenceKernels"  # the wiring ran, on a CPU
    assert set(tiny["comparisons"]) == {f"{a} vs {b}" for a, b in modes.COMPARISONS if gpu_only.isdisjoint({a, b})}
    assert tiny["comparisons"]["baseline vs fp32-reference"]["latents_rel_error"] < 1e-4  # same fp32 weights
    assert tiny["comparisons"]["graph-fp16 vs eager-fp16"]["latents_rel_error"] < 1e-5
    assert tiny["vae_decode_float16"]["finite"]


PROFILE_MODES = ("balanced-fp16", "low-fp16")  # whole-blocks-fp16 runs on a GPU only (Mode.gpu_only)


@pytest.mark.heavy
def test_dry_run_measures_the_memory_profiles_beside_graph_fused_fp16(dry_run):
    _, _, data, out = dry_run
    tiny = data["sections"]["tiny"]
    measured = {name: tiny["modes"][name] for name in ("graph-fused-fp16", *PROFILE_MODES)}
    for name, mode in measured.items():
        assert mode["peak_memory_gib"] > 0 and mode["ms_per_step"] > 0 and mode["latents_finite"], name
        assert mode["precision"] == "float16", name
    assert {name: (m["memory_profile"], m["token_chunk"]) for name, m in measured.items()} == {
        "graph-fused-fp16": ("fast", modes.FAST.token_chunk),
        "balanced-fp16": ("balanced", modes.BALANCED.token_chunk),
        "low-fp16": ("low", modes.LOW.token_chunk),
    }
    encoders = ["vae", "text_encoder", "image_encoder", "resampler"]
    assert sorted(measured["balanced-fp16"]["offloaded"]) == sorted(encoders)  # built on the CPU, given a device
    assert sorted(measured["low-fp16"]["offloaded"]) == sorted([*encoders, "unet"])
    assert measured["graph-fused-fp16"]["offloaded"] == []
    # graphs where the UNet stays on the device (the wiring, on a CPU); low's is not capturable: eager
    assert (
        measured["balanced-fp16"]["fused_kernels"] == "ReferenceKernels"
        and measured["low-fp16"]["fused_kernels"] is None
    )
    # The profiles change no picture. The tiny preset's blocks fit one piece of any profile: the same latents (the
    # decode, a frame a call, rounds otherwise in fp16). low's one branch a call changes fp16's rounding on the CPU
    # (in fp32: 5.6e-6, as the baseline's): no more than fp16 itself costs against fp32.
    comparisons = {name: tiny["comparisons"][f"{name} vs graph-fused-fp16"] for name in PROFILE_MODES}
    assert comparisons["balanced-fp16"]["latents_rel_error"] < 1e-3
    fp16_itself = tiny["comparisons"]["eager-fp16 vs fp32-reference"]["latents_rel_error"]
    assert comparisons["low-fp16"]["latents_rel_error"] < 2 * fp16_itself
    table = (out / "gpu-report.md").read_text()
    assert "| whole-blocks-fp16 | not run on --dry-run" in table
    assert "| balanced-fp16 | balanced; pieces of 65536 tokens; host: " in table
    assert "| low-fp16 vs graph-fused-fp16 |" in table


def test_graph_modes_keep_their_unet_on_the_device_and_a_graph_on_low_is_refused():
    assert [m.name for m in modes.MODES if m.memory.offload_unet] == ["low-fp16"]
    assert all(not m.memory.offload_unet for m in modes.MODES if m.cuda_graph)
    profile_modes = [m.name for m in modes.MODES if m.memory is not modes.FAST]
    assert profile_modes == ["whole-blocks-fp16", "balanced-fp16", "low-fp16"]
    assert all((name, "graph-fused-fp16") in modes.COMPARISONS for name in profile_modes)
    model = modes.dcrt.random_model("tiny", seed=0, device="cpu")
    low_graph = modes.Mode("low-graph", "fp32", cuda_graph=True, memory=modes.LOW)
    with pytest.raises(ValueError, match="low profile's backend is not capturable"):
        modes.pipeline_for_mode(model, low_graph, dry_run=True, device=modes.torch.device("cpu"))


@pytest.mark.parametrize("peak_gib, met", [(8.5, True), (9.5, False)])  # 9.5 GiB is 10.2 GB
def test_tooncrafter_half_precision_peaks_are_held_to_the_10_gb_target(tmp_path, peak_gib, met):
    report = gpu_report.Report(tmp_path, budget_s=60)
    try:
        seconds = {"conditioning": 1.0, "denoise": 2.0, "decode": 1.0, "end_to_end": 4.0}
        measured = {"seconds": seconds, "ms_per_step": 1.0, f"computed_{modes.STEPS_COMPUTED}_step_s": 5.0}
        measured |= {"unet_tflops_effective": 1.0, "latents_finite": True, "black_frames": 0}
        entries = {m.name: measured | {"peak_memory_gib": 20.0 if m.dtype == "fp32" else 8.0} for m in modes.MODES}
        entries["graph-fused-fp16"]["peak_memory_gib"] = peak_gib
        entries["graph-fp16"] = "skipped (budget)"
        report.record("tooncrafter", "modes", value=entries)
        modes.memory_target(report, "tooncrafter")
    finally:
        report.close()
    target = json.loads((tmp_path / "gpu-report.json").read_text())["sections"]["tooncrafter"]["memory_target"]
    assert target["target_gb"] == 10 and target["met"] is met
    # fp32, skips and whole-blocks-fp16 (no profile of dcrt's) left out
    assert set(target["peak_gb"]) == {"eager-fp16", "graph-fused-fp16", "balanced-fp16", "low-fp16", "graph-fused-bf16"}
    assert f"Peak memory target 10 GB: met {met}" in modes.markdown(report.data)


def test_dry_run_measures_svd_against_diffusers_beside_the_anchor(dry_run_without_modes):
    _, _, data, out = dry_run_without_modes
    svd = data["sections"]["tiny-svd"]
    assert svd["kind"] == "svd" and svd["settings"]["computed_at_steps"] == 25
    assert list(svd["modes"]) == ["eager", "graph", "low", "diffusers"]
    for name, mode in svd["modes"].items():
        assert mode["ms_per_step"] > 0 and mode["computed_25_step_s"] > mode["unet_s_at_25_steps"] > 0, name
    assert svd["modes"]["diffusers"]["settings"]["backend_class"] == "diffusers.StableVideoDiffusionPipeline"
    assert svd["graph_vs_eager_latents_rel_error"] < 1e-5  # the runner's body on the CPU: the eager numbers
    assert svd["modes"]["low"]["memory_profile"] == "low" and svd["modes"]["low"]["peak_memory_gib"] > 0
    assert svd["low_vs_eager_latents_rel_error"] < 1e-4  # fp32 on the CPU: one branch a call, the same numbers
    assert svd["anchor"] == {
        "what": "TensorRT SVD-XT 1.1, H100 PCIe, 25 frames, 25 steps",
        "end_to_end_s": 22.6,
        "unet_s": 19.1,
    }
    table = (out / "gpu-report.md").read_text()
    assert "## tiny-svd" in table and "(published; not measured here) | - | - | - | 19.1 | 22.6 |" in table


def test_the_svd_section_takes_an_svd_preset_only(tmp_path, capsys):
    assert gpu_report.main(["--dry-run", "--out", str(tmp_path), "--svd", "512"]) == 2
    assert "512 does not support --svd yet (model family dynamicrafter; svd has it)" in capsys.readouterr().err


def test_dry_run_builds_and_times_one_aoti_package(dry_run_without_modes):
    _, _, data, out = dry_run_without_modes
    aoti = data["sections"]["aoti"]
    assert aoti["settings"]["component"] == "text_encoder" and aoti["settings"]["target"].startswith("aoti-cpu-avx2")
    built = aoti["built"]["text_encoder"]
    assert built["build_s"] > 0 and built["mib"] > 0 and built["parity"]["rel_error"] < 1e-4
    assert len(aoti["not_built"]) == 5  # the dry run builds one package
    assert aoti["timing"]["eager_ms"] > 0 and aoti["timing"]["aoti_ms"] > 0
    assert aoti["timing"]["rel_error_vs_eager"] < 1e-4
    assert aoti["cuda_graph"].startswith("not measured")  # measured on CUDA only
    assert "## aoti (tiny" in (out / "gpu-report.md").read_text()


def test_budget_skips_sections_by_name(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["gpu_report.py"])
    monkeypatch.setattr(gpu_report, "WATCHDOG_GRACE_S", 100000.0)  # in this process, the watchdog must not fire
    code = gpu_report.main(["--dry-run", "--out", str(tmp_path), "--budget", "5"])
    data = json.loads((tmp_path / "gpu-report.json").read_text())
    assert code == 0 and data["status"] == "done"
    assert all(s["status"].startswith("skipped (budget") for s in data["sections"].values())
    assert list(data["sections"]) == EVERY_SECTION
    assert "| aoti | skipped (budget" in (tmp_path / "gpu-report.md").read_text()


def test_sections_run_by_name_and_an_unknown_one_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(modes, "kernels_section", lambda *args: None)
    assert gpu_report.main(["--dry-run", "--out", str(tmp_path), "--sections", "kernels", "--budget", "100000"]) == 0
    assert list(json.loads((tmp_path / "gpu-report.json").read_text())["sections"]) == ["kernels"]
    with pytest.raises(SystemExit):
        gpu_report.parse_args(["--dry-run", "--out", str(tmp_path), "--sections", "kernels,1024"])
    assert "--sections: no section 1024; this run's sections: kernels, gpu-tests, tiny," in capsys.readouterr().err
    with pytest.raises(SystemExit):
        gpu_report.parse_args(["--out", str(tmp_path), "--work", str(tmp_path / "work")])
    assert "--work must be outside --out" in capsys.readouterr().err


def test_a_failing_mode_fails_its_section_and_the_report(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(modes, "measure_mode", broken)
    code = gpu_report.main(["--dry-run", "--out", str(tmp_path), "--sections", "tiny,long-video", "--budget", "100000"])
    data = json.loads((tmp_path / "gpu-report.json").read_text())
    assert code == 1 and data["status"] == "failed sections: tiny, long-video"
    assert data["sections"]["tiny"]["modes"]["baseline"].startswith("failed: RuntimeError: simulated failure")
    assert "RuntimeError" in (tmp_path / "gpu-report.log").read_text()


def test_svd_presets_are_refused_in_one_line_before_any_work(tmp_path, capsys):
    code = gpu_report.main(["--dry-run", "--out", str(tmp_path), "--presets", "tiny,svd-xt"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    refusal = "svd-xt does not support --presets (SVD goes to --svd) yet (model family svd; dynamicrafter has it)"
    assert code == 2 and err.endswith(refusal)
    data = json.loads((tmp_path / "gpu-report.json").read_text())
    assert data["status"].endswith(refusal) and data["sections"] == {}


def test_the_first_json_is_written_before_the_torch_side_is_imported(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ, PYTHONPATH=str(site), DCRT_TEST_MISSING_MODULES="torch")
    cmd = [sys.executable, str(REPO / "benchmarks" / "gpu_report.py"), "--out", str(tmp_path / "out")]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    data = json.loads((tmp_path / "out" / "gpu-report.json").read_text())
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert data["status"] == "failed: import: ModuleNotFoundError: No module named 'torch'"
    assert data["command"] == f"gpu_report.py --out {tmp_path / 'out'}" and data["sections"] == {}
    assert "ModuleNotFoundError: No module named 'torch'" in data["import_error"][-1]


# The child ignores SIGINT, and its grandchild too: only the group's SIGKILL ends them. `-S`: a quick start.
SLEEPER = textwrap.dedent(
    """
    import signal, subprocess, sys, time
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    code = "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(600)"
    print(subprocess.Popen([sys.executable, "-S", "-c", code]).pid, flush=True)
    time.sleep(600)
    """
)


def _gone(pid: int) -> bool:
    """No such process, or a zombie waiting for its new parent to reap it; polled with a generous bound."""
    for _ in range(600):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in "ZX":
            return True
        time.sleep(0.1)
    return False


def test_a_child_past_its_timeout_is_ended_with_its_whole_process_group(tmp_path):
    report = gpu_report.Report(tmp_path, budget_s=60)
    try:
        with pytest.raises(RuntimeError, match="timeout after 2 s"):
            gpu_report.child_section(report, "sleeper", [sys.executable, "-S", "-c", SLEEPER], timeout_s=2)
    finally:
        report.close()
    grandchild = int((tmp_path / "sleeper.log").read_text().split()[0])
    assert _gone(grandchild) and not report.children
    section = json.loads((tmp_path / "gpu-report.json").read_text())["sections"]["sleeper"]
    assert section["exit_code"] == "timeout after 2 s (process group ended)"


def test_the_host_section_is_not_run_where_its_tools_are_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_report, "host_prerequisites", lambda: ["cmake not on PATH", "png.h not found"])
    report = gpu_report.Report(tmp_path, budget_s=100000)
    try:
        report.run_section("gpu-host", lambda: gpu_report.gpu_host_section(report, dry_run=False))
    finally:
        report.close()
    section = json.loads((tmp_path / "gpu-report.json").read_text())["sections"]["gpu-host"]
    assert section["status"] == "not run: cmake not on PATH; png.h not found" and "command" not in section
