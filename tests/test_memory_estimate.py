"""benchmarks/memory.py: the live-tensor count is right on a known sequence, the estimate runs the pipeline on the
simulated device with each profile, and the committed estimates still hold (a regression in memory fails here)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

import dcrt
from dcrt.memory import ESTIMATES_FILE, PROFILES, load_estimates

REPO = Path(__file__).resolve().parents[1]
# Appended, not prepended: benchmarks/parity.py must not shadow the top-level parity package.
sys.path.append(str(REPO / "benchmarks"))

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


def test_live_tensors_of_one_device_count_only_its_storages_and_the_copies_onto_it():
    with memory.LiveTensors("meta") as live:
        host = torch.empty(1024)  # on the CPU: not counted
        on_device = host.to("meta")  # 4 KiB, copied in
        assert (live.bytes, live.copied_in) == (4096, 4096)
        del on_device


def test_each_profile_runs_the_pipeline_and_the_leaner_ones_hold_less(tmp_path):
    # The command line for fast with and without the original's norms (the one comparison of norms made here), the
    # leaner profiles by the function it calls: each estimate runs a whole video on the simulated device.
    argv = ["--presets", "tiny-tooncrafter", "--steps", "2", "--profiles", "fast", "--original-norms"]
    rows = memory.main([*argv, "--out", str(tmp_path)])
    assert [(r.profile, r.norms) for r in rows] == [("fast", "dcrt"), ("fast", "fp32 copies")]
    rows += [memory.estimate("tiny-tooncrafter", "fp16", PROFILES[p], steps=2) for p in ("balanced", "low")]
    by = {(r.profile, r.norms): r for r in rows}
    fast, balanced, low = (by[(p, "dcrt")] for p in PROFILES)
    assert fast.resident_gib > balanced.resident_gib > low.resident_gib == 0  # encoders, then the UNet, leave
    assert fast.peak_gib > balanced.peak_gib > low.peak_gib
    assert (fast.unet_calls_per_step, low.unet_calls_per_step) == (1.0, 2.0)  # guidance branches one at a time
    assert fast.host_to_device_gib == 0 < balanced.host_to_device_gib < low.host_to_device_gib
    # The clip decoder's norms are its largest temporaries: without the fp32 copies its peak falls.
    assert fast.decode_gib < by[("fast", "fp32 copies")].decode_gib
    assert (tmp_path / "memory-tiny-tooncrafter-fp16.json").is_file()


def test_fp8_weights_halve_what_stays_on_the_device():
    fp16 = memory.resident_bytes("tiny", "fp16", PROFILES["fast"])
    fp8 = memory.resident_bytes("tiny", "fp16", PROFILES["fast"], weights="fp8")
    assert fp8 < 0.75 * fp16
    assert memory.estimate("tiny", "fp16", PROFILES["fast"], steps=1).resident_gib == round(fp16 / memory.GIB, 3)


@pytest.mark.parametrize("profile", ["balanced", "low"])
def test_the_committed_estimate_for_256_still_holds(profile):
    """Preset 256 at full architecture (fake tensors: no data, under a minute): the peak may fall, never rise past
    the committed figure (dcrt/memory_estimates.json, which `--memory auto` reads; made with --steps 2, as here).
    1% covers op-level changes between torch versions; a profile that stops offloading, chunking or running the
    branches one at a time moves it by far more (low's sampling peak is 0.33 GiB over the UNet's weights)."""
    committed = load_estimates()["256"]["fp16"][profile]
    row = memory.estimate("256", "fp16", PROFILES[profile], steps=2)
    assert row.resident_gib * 2**30 == pytest.approx(committed.resident_bytes, abs=2**21)
    assert row.peak_gib * 2**30 <= 1.01 * (committed.resident_bytes + committed.activation_bytes) + 2**21


def test_the_estimates_file_covers_every_preset_with_a_release_and_every_profile():
    raw = json.loads((REPO / "dcrt" / ESTIMATES_FILE).read_text())["estimates"]
    for name in ("256", "512", "1024", "512-interp", "tooncrafter", "svd-xt"):
        assert dcrt.get_preset(name).name == name
        for dtype in ("fp16", "bf16"):
            assert set(raw[name][dtype]) == set(PROFILES), (name, dtype)
