"""Every mode benchmarks/gpu_report.py measures, run on a simulated CUDA device (tests/_cuda_fakes.py).

The first GPU run must not be where a CPU/CUDA device mix, a host sync inside the captured step, an autocast dtype
error or an oversized kernel launch is found: here they fail CI. Fake tensors carry no values, so these tests prove
the wiring (devices, dtypes, shapes, capture, launches), not the numbers; the numbers are checked on the CPU by the
rest of the suite and on a GPU by `pytest -m gpu`.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _cuda_fakes import DEVICE, HostSync, fake_model, simulated_cuda
from conftest import fp32_tolerance

import dcrt
from dcrt.families.dynamicrafter.options import resolve_options
from dcrt.families.dynamicrafter.pipeline import Pipeline
from dcrt.families.dynamicrafter.torch_backend import TorchBackend
from dcrt.families.state_dicts import WEIGHT_DTYPES
from dcrt.families.svd.options import resolve_svd_options
from dcrt.families.svd.pipeline import SVDPipeline
from dcrt.families.svd.torch_backend import TorchSVDBackend
from dcrt.memory import FAST
from dcrt.models import layers
from dcrt.models.dynamicrafter import DynamiCrafter
from dcrt.models.svd import StableVideoDiffusion

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import gpu_report  # noqa: E402
import gpu_report_modes  # noqa: E402

STEPS = 2
SUFFIX = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}
# What the report runs on a GPU (at full size: `-m full`, 1-2 min more) and on its dry run, plus tiny-tooncrafter,
# the tiny stand-in for its tooncrafter section's dual-ref decoder.
ON_GPU = gpu_report.parse_args(["--out", "unused"])
DRY_RUN = gpu_report.parse_args(["--out", "unused", "--dry-run"])


def _presets(tiny: list[str], full: list[str]) -> list:
    return [*tiny, *(pytest.param(name, marks=pytest.mark.full) for name in full)]


def _image(opts) -> np.ndarray:
    return np.full((opts.height, opts.width, 3), 128, np.uint8)


def _generate(pipeline: Pipeline, opts, task: str | None = None):
    """As gpu_report measures: the preset's first task (interpolate: the same image at both ends)."""
    task = task or pipeline.preset.modes[0]
    images = [_image(opts)] * (2 if task == "interpolate" else 1)
    return pipeline.generate(images, gpu_report_modes.PROMPT, task, opts)


@pytest.mark.parametrize("preset_name", _presets([*DRY_RUN.presets, "tiny-tooncrafter"], ON_GPU.presets))
def test_every_gpu_report_mode_runs_on_simulated_cuda(preset_name):
    preset = dcrt.get_preset(preset_name)
    opts = resolve_options(preset, steps=STEPS, seed=123)
    latent = (1, preset.vae.z_channels, opts.frames, opts.height // 8, opts.width // 8)
    with simulated_cuda() as cuda:
        for mode in gpu_report_modes.MODES:
            # An offloading profile's model is in host memory; its backend places it on the device.
            home = "cpu" if mode.offloads else DEVICE
            model = fake_model(DynamiCrafter, preset_name, WEIGHT_DTYPES[mode.dtype], cuda.fake, home)
            graphs, launches = len(cuda.graphs), len(cuda.kernels.launches)
            pipeline = gpu_report_modes.pipeline_for_mode(model, mode, dry_run=False, device=DEVICE)
            result = _generate(pipeline, opts)

            assert result.latents.device == DEVICE and result.latents.dtype == torch.float32, mode.name
            assert tuple(result.latents.shape) == latent and result.frames.shape == (
                opts.frames,
                opts.height,
                opts.width,
                3,
            )
            if mode.baseline:  # the original's way on CUDA: fp32 weights under fp16 autocast
                assert pipeline.backend.precision == "float32 weights, float16 autocast"
            new_graphs = cuda.graphs[graphs:]
            if mode.cuda_graph:  # captured once, replayed every step
                assert [(g.captures, g.replays) for g in new_graphs] == [(1, STEPS)], mode.name
            else:
                assert new_graphs == [], mode.name
            names = {launch.name for launch in cuda.kernels.launches[launches:]}
            if mode.fused_kernels:  # the real wrappers launched: the combine reads the model's dtype, the update fp32
                combine = {"cfg_combine"} | ({"cfg_partials"} if opts.guidance_rescale > 0 else set())  # rescale's stds
                assert names == {f"{k}_{SUFFIX[model.dtype]}" for k in combine} | {"ddim_update_f32"}, mode.name
            else:
                assert names == set(), mode.name


@pytest.mark.parametrize(
    "preset_name, task",
    [("tiny", "interpolate"), ("tiny", "loop"), ("tiny-256", "animate"), ("tiny-tooncrafter", "loop")],
)
def test_the_baseline_runs_under_cuda_autocast_in_every_other_task(preset_name, task):
    """The tasks the report does not measure, the way `dcrt bench` runs its baseline: every op under fp16 autocast
    with fp32 weights, where CUDA refuses mixed dtypes that the CPU accepts."""
    preset = dcrt.get_preset(preset_name)
    opts = resolve_options(preset, task, steps=STEPS, seed=123)
    baseline = next(m for m in gpu_report_modes.MODES if m.baseline)
    with simulated_cuda() as cuda:
        model = cuda.build(DynamiCrafter, preset, WEIGHT_DTYPES[baseline.dtype])
        result = _generate(gpu_report_modes.pipeline_for_mode(model, baseline, dry_run=False), opts, task)
        assert result.latents.device == DEVICE and result.frames.shape[1:] == (opts.height, opts.width, 3)


@pytest.mark.parametrize(
    "preset_name, frames",
    [
        (DRY_RUN.long_video, DRY_RUN.long_video_frames),
        pytest.param(ON_GPU.long_video, ON_GPU.long_video_frames, marks=pytest.mark.full),
    ],
)
def test_long_video_mode_runs_on_simulated_cuda(preset_name, frames):
    preset = dcrt.get_preset(preset_name)
    mode = next(m for m in gpu_report_modes.MODES if m.name == gpu_report_modes.LONG_VIDEO_MODE)
    opts = resolve_options(preset, steps=STEPS, seed=123, frames=frames)
    with simulated_cuda() as cuda:
        model = cuda.build(DynamiCrafter, preset, WEIGHT_DTYPES[mode.dtype])
        result = _generate(gpu_report_modes.pipeline_for_mode(model, mode, dry_run=False), opts)
        assert result.latents.shape[2] == frames and result.latents.device == DEVICE
        assert [(g.captures, g.replays) for g in cuda.graphs] == [(1, STEPS)]


@pytest.mark.parametrize("cuda_graph", [False, True], ids=["eager", "runner"])
@pytest.mark.parametrize("preset_name", _presets([DRY_RUN.svd], [ON_GPU.svd]))
def test_svd_modes_run_on_simulated_cuda(preset_name, cuda_graph):
    preset = dcrt.get_preset(preset_name)
    opts = resolve_svd_options(preset, steps=STEPS)
    with simulated_cuda() as cuda:
        model = cuda.build(StableVideoDiffusion, preset, torch.float16)  # the report's SVD section runs fp16
        result = SVDPipeline(TorchSVDBackend(model), cuda_graph=cuda_graph).generate(_image(preset), opts)
        assert result.latents.device == DEVICE and result.frames.shape == (
            preset.frames,
            preset.height,
            preset.width,
            3,
        )
        assert [(g.captures, g.replays) for g in cuda.graphs] == ([(1, STEPS)] if cuda_graph else [])


def test_long_video_at_1024_keeps_every_attention_call_within_the_kernels_batch_limit():
    """48 frames at 576x1024: 5 windows x 2 guidance branches in one UNet call, 92,160 pixels a temporal attention
    would batch. With whole transformer blocks (what an export traces: no token pieces) the calls are sliced to
    CUDA's limit, and the slices cover the whole batch; every profile's token pieces keep them far below it."""
    preset = dcrt.get_preset("1024")
    opts = resolve_options(preset, steps=STEPS, seed=123, frames=48, eta=0.0)
    pixels = (opts.height // 8) * (opts.width // 8)
    batch = opts.windows("animate").count * 2 * pixels
    assert batch > layers.MAX_ATTENTION_BATCH  # the case this test is for
    with simulated_cuda() as cuda:
        model = cuda.build(DynamiCrafter, preset, torch.float16)
        x = torch.randn(1, 4, opts.frames, opts.height // 8, opts.width // 8, device=DEVICE)
        whole_blocks = dataclasses.replace(FAST, token_chunk=None)
        Pipeline(TorchBackend(model, whole_blocks), cuda_graph=False).sample(
            [_image(opts)], "a boat", "animate", opts, x_T=x
        )
        assert max(cuda.attention_batches) == layers.MAX_ATTENTION_BATCH
        assert batch - layers.MAX_ATTENTION_BATCH in cuda.attention_batches
        cuda.attention_batches.clear()
        Pipeline(TorchBackend(model, FAST), cuda_graph=False).sample([_image(opts)], "a boat", "animate", opts, x_T=x)
    assert max(cuda.attention_batches) <= FAST.token_chunk // opts.window < layers.MAX_ATTENTION_BATCH


def test_attention_in_slices_equals_one_call(monkeypatch):
    """The sliced path on real tensors: each sample attends only to itself, so slices compute the same function
    (fp32; a chain of ~100 ops: 16-wide dot products of 64, a softmax over 16 keys, a weighted sum of 16)."""
    q, k, v = (torch.randn(10, 16, 64, generator=torch.Generator().manual_seed(i)) for i in range(3))
    whole = layers.attention(q, k, v, heads=4)
    monkeypatch.setattr(layers, "MAX_ATTENTION_BATCH", 3)
    sliced = layers.attention(q, k, v, heads=4)
    assert sliced.shape == whole.shape
    assert ((sliced - whole).norm() / whole.norm()).item() < fp32_tolerance(ops=100)


# --- the simulation finds what a GPU would -------------------------------------------------------------------


def test_autocast_is_on_and_refuses_a_mixed_dtype_blend():
    """Defect 1 of issue 26, as it was: lerp of float16 activations with a float32 weight under CUDA autocast."""
    with simulated_cuda(), torch.autocast("cuda", dtype=torch.float16):
        assert torch.is_autocast_enabled("cuda")
        s = torch.nn.functional.linear(torch.randn(4, 8, device=DEVICE), torch.randn(8, 8, device=DEVICE))
        assert s.dtype == torch.float16
        with pytest.raises(RuntimeError, match="expected dtype"):
            torch.lerp(s, s, torch.sigmoid(torch.zeros(1, device=DEVICE)))


def test_a_cpu_tensor_in_a_cuda_op_fails():
    with simulated_cuda(), pytest.raises(RuntimeError, match="devices"):
        torch.randn(4, device=DEVICE) + torch.randn(4)


def test_a_host_sync_inside_the_captured_step_fails():
    with simulated_cuda():
        x = torch.randn(4, device=DEVICE)
        for sync in (lambda: x.sum().item(), lambda: x.cpu(), lambda: torch.nonzero(x)):
            with pytest.raises(HostSync), torch.cuda.graph(torch.cuda.CUDAGraph()):
                sync()


def test_a_kernel_launch_with_a_cpu_tensor_fails():
    with simulated_cuda() as cuda:
        kernels = cuda.load_kernels(DEVICE)
        x = torch.randn(2, 4, 2, 8, 8, device=DEVICE)
        table = torch.zeros(8, STEPS, device=DEVICE)
        step = torch.zeros(1, dtype=torch.int32, device=DEVICE)
        kernels.ddim_update(x, x, x, None, table, step)  # well formed: launched
        assert [launch.name for launch in cuda.kernels.launches] == ["ddim_update_f32"]
        with pytest.raises(ValueError, match="contiguous CUDA tensor"):
            kernels.ddim_update(x, x, x, None, table, torch.zeros(1, dtype=torch.int32))
