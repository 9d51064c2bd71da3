"""`dcrt bench` on an SVD preset: dcrt's backends against diffusers' pipeline, one report (dcrt.families.svd.bench)."""

from __future__ import annotations

import json

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import dcrt
from dcrt.families.svd.bench import svd_unet_flops
from dcrt.presets import get_preset


def test_unet_flops_on_the_meta_device_equal_a_real_forwards():
    preset = get_preset("tiny-svd")
    model = dcrt.random_svd_model(preset)
    x = torch.randn(1, 8, preset.frames, 8, 8)
    # The math attention: the CPU's fused attention kernel is not one PyTorch's counter knows.
    with FlopCounterMode(display=False) as counter, torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        model.unet(x, torch.zeros(1), torch.randn(1, 1, 32), torch.tensor([[6.0, 127.0, 0.02]]))
    assert svd_unet_flops(preset) == counter.get_total_flops() > 0
    assert 79e12 < svd_unet_flops(get_preset("svd-xt")) < 81e12  # 80 TFLOP per sample at 25 x 576 x 1024


def test_bench_times_the_backends_against_diffusers(run_cli, tmp_path):
    args = ["bench", "--res", "tiny-svd", "--backends", "baseline,torch", "--steps", "2", "--repeat", "1"]
    code, out, err = run_cli([*args, "--warmup", "0", "-o", str(tmp_path)])
    assert code == 0, err
    assert "| baseline |" in out and "| torch |" in out and "**tiny-svd** at 64x64, 6 frames, 2 steps" in out
    report = json.loads(next(tmp_path.glob("*.json")).read_text())
    by_name = {r["backend"]: r for r in report["results"]}
    assert by_name["baseline"]["settings"]["backend_class"] == "diffusers.StableVideoDiffusionPipeline"
    assert by_name["torch"]["settings"]["backend_class"] == "TorchSVDBackend"
    for result in by_name.values():
        seconds = result["median_s"]
        assert all(seconds[s] > 0 for s in ("conditioning", "denoise", "decode"))
        assert seconds["end_to_end"] >= seconds["conditioning"] + seconds["decode"]
        assert result["unet_evaluations_per_run"] == 4  # 2 steps x 2 guidance branches
    assert report["unet_flops_per_sample"] == svd_unet_flops(get_preset("tiny-svd"))


def test_bench_refuses_what_svd_does_not_vary(run_cli, tmp_path):
    code, _, err = run_cli(["bench", "--res", "tiny-svd", "--frames", "8", "-o", str(tmp_path)])
    assert code == 2 and err.strip() == "dcrt: error: --frames: preset tiny-svd runs at its own size and frame count"


def test_the_baseline_reads_a_diffusers_folder_only(tmp_path):
    import pytest

    from dcrt.errors import UsageError
    from dcrt.families.svd.baseline import load_diffusers_pipeline

    with pytest.raises(UsageError, match="reads the release's diffusers folder"):
        load_diffusers_pipeline(get_preset("svd-xt"), tmp_path / "svd_xt.safetensors", torch.float16)
