"""Full-size AOTInductor packages: the 512 preset's portable CPU bundle from seeded random weights (hours of g++ on
2 cores and ~12 GB of disk: each UNet package embeds its 5.6 GB of fp32 weights), checked by the build itself per
component and here once more on fresh inputs for one component."""

import json

import pytest
import torch

import dcrt
from dcrt.artifacts.aoti_build import AotiConfig, build_aoti_bundle
from dcrt.artifacts.aoti_bundle import detect_aoti_target
from dcrt.artifacts.export import graph_modules, relative_error
from dcrt.artifacts.graphs import io_table, sample_inputs
from dcrt.backends.aoti_backend import call_package, load_package
from dcrt.weights import Weights

pytestmark = pytest.mark.full


def test_512_packages_build_and_match_pytorch(tmp_path):
    preset = dcrt.get_preset("512")
    messages = []
    report = build_aoti_bundle(
        preset, Weights("512"), tmp_path, AotiConfig(), detect_aoti_target("cpu"), log=messages.append
    )
    print("\n".join(messages))  # per component: size, build-time parity and seconds (-s shows them)
    manifest = json.loads((report.directory / "manifest.json").read_text())
    assert list(manifest["engines"]) == list(io_table(preset))
    assert all(e["parity"]["rel_error"] < 1e-4 for e in manifest["engines"].values())
    spec = io_table(preset)["vae_decoder"]  # the largest activations of the small components
    inputs = sample_inputs(spec, preset, seed=11)
    with torch.no_grad():
        want = graph_modules(dcrt.random_model(preset, seed=0), torch.float32)["vae_decoder"](*inputs)
        got = call_package(load_package(report.directory / "vae_decoder.pt2", "cpu"), inputs)[0]
    assert relative_error(got, want) < 1e-4
