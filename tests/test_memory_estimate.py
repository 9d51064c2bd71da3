"""benchmarks/memory.py: the live-tensor count is right on a known sequence, and the estimate runs the pipeline."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import memory  # noqa: E402


def test_live_tensors_count_until_freed():
    meta = torch.device("meta")
    with memory.LiveTensors() as live:
        a = torch.empty(1024, device=meta)  # 4 KiB
        with live.stage() as stage:
            b = torch.empty(2048, device=meta)  # 8 KiB
            del b
            c = torch.empty(1024, device=meta)
        assert stage == {"held": 4096, "peak": 4096 + 8192, "after": 8192}
        del a, c


def test_tooncrafter_estimate_runs_the_pipeline_and_the_norms_save_the_fp32_copies(tmp_path):
    rows = memory.main(["--presets", "tiny-tooncrafter", "--steps", "2", "--out", str(tmp_path)])
    dcrt_norms, fp32_copies = rows
    assert (dcrt_norms.norms, fp32_copies.norms) == ("dcrt", "fp32 copies")
    assert dcrt_norms.weights_gib == fp32_copies.weights_gib > 0
    stages = max(dcrt_norms.sampling_gib, dcrt_norms.decode_gib)
    assert abs(dcrt_norms.peak_gib - dcrt_norms.weights_gib - stages) <= 2e-3  # each figure rounded on its own
    # The clip decoder's norms are its largest temporaries: without the fp32 copies its peak falls.
    assert dcrt_norms.decode_gib < fp32_copies.decode_gib
    assert (tmp_path / "memory-tiny-tooncrafter-fp16.json").is_file()
