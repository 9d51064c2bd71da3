"""Stable Video Diffusion's ONNX export (dcrt.families.svd.io_spec, dcrt.families.svd.export) and its ONNX Runtime
backend, against the PyTorch backend per component and end to end (tiny-svd, fp32, CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import GRAPH_TOLERANCE, sampling_tolerance

from dcrt.artifacts.export import relative_error
from dcrt.artifacts.graphs import io_table, sample_inputs
from dcrt.backends.onnxruntime_backend import OnnxRuntimeGraphs, open_onnxruntime
from dcrt.errors import UsageError
from dcrt.families.dynamicrafter.static import StaticShapeBackend
from dcrt.families.svd.options import resolve_svd_options
from dcrt.families.svd.pipeline import SVDPipeline
from dcrt.families.svd.static import StaticSVDBackend
from dcrt.families.svd.torch_backend import TorchSVDBackend
from dcrt.presets import get_preset

BOUND = GRAPH_TOLERANCE  # fp32 graphs, one call: float reassociation along the graph's chain


@pytest.fixture
def svd_export(svd_exported):
    return svd_exported


def test_the_io_table_has_static_shapes_and_a_graph_for_the_short_last_chunk():
    specs = io_table(get_preset("svd-xt"))
    assert list(specs) == ["image_encoder", "vae_encoder", "unet", "vae_decoder", "vae_decoder_tail"]
    assert [t.shape for t in specs["unet"].inputs] == [(2, 8, 25, 72, 128), (2,), (2, 1, 1024), (2, 3)]
    assert specs["vae_decoder"].batch == 14 and specs["vae_decoder_tail"].batch == 11  # 25 = 14 + 11
    assert specs["image_encoder"].outputs[0].shape == (1, 1, 1024)
    assert specs["vae_encoder"].inputs[0].shape == (1, 3, 576, 1024)
    tiny = io_table(get_preset("tiny-svd"))
    assert tiny["vae_decoder"].batch == 4 and tiny["vae_decoder_tail"].batch == 2
    ids = sample_inputs(tiny["unet"], get_preset("tiny-svd"))[3]
    assert ids.shape == (2, 3) and (ids[:, 1] >= 127).all()  # the time ids near the preset's, not unit noise


def test_export_records_every_graph_within_the_fp32_bound(svd_export):
    _, out, manifest = svd_export
    assert set(manifest.components) == set(io_table(get_preset("tiny-svd")))
    assert manifest.schedule == {}  # EDM's schedule comes from the preset
    for name, entry in manifest.components.items():
        print(f"export {name}: ONNX Runtime vs PyTorch {entry.parity['rel_error']:.2e}")
        assert entry.parity["rel_error"] < BOUND
    assert (out / "vae_decoder_tail.onnx").is_file()


def test_onnxruntime_matches_torch_per_component(svd_export):
    model, out, _ = svd_export
    ort, ref = open_onnxruntime(out), TorchSVDBackend(model)
    assert isinstance(ort, StaticSVDBackend) and ort.decode_chunks == (4,)
    g = torch.Generator().manual_seed(3)
    pixels, frames = torch.randn(2, 3, 224, 224, generator=g), torch.rand(1, 3, 64, 64, generator=g) * 2 - 1
    spec = io_table(model.preset)["unet"]
    x, c_noise, context, ids = sample_inputs(spec, model.preset, seed=4)
    z = torch.randn(6, 4, 8, 8, generator=g)
    pairs = {
        "image_encoder (2 images)": (ort.encode_image(pixels), ref.encode_image(pixels)),
        "vae_encoder": (ort.encode_latents(frames), ref.encode_latents(frames)),
        "unet, batch 2": (ort.unet(x, c_noise, context, ids).clone(), ref.unet(x, c_noise, context, ids)),
        "unet, batch 1": (
            ort.unet(x[:1], c_noise[:1], context[:1], ids[:1]),
            ref.unet(x[:1], c_noise[:1], context[:1], ids[:1]),
        ),
        "vae_decoder (4)": (ort.decode_latents(z[:4]).clone(), ref.decode_latents(z[:4])),
        "vae_decoder_tail (2)": (ort.decode_latents(z[4:]), ref.decode_latents(z[4:])),
    }
    for name, (ours, expected) in pairs.items():
        error = relative_error(ours, expected)
        print(f"{name}: ONNX Runtime vs torch {error:.2e}")
        assert error < BOUND, name
    with pytest.raises(UsageError, match=r"chunks of \[2, 4\] frames, not 3"):
        ort.decode_latents(z[:3])


def test_onnxruntime_runs_the_pipeline_as_torch_does(svd_export):
    model, out, _ = svd_export
    picture = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    opts = resolve_svd_options(model.preset, steps=3)
    ours = SVDPipeline(open_onnxruntime(out)).generate(picture, opts)
    expected = SVDPipeline(TorchSVDBackend(model)).generate(picture, opts)
    error = relative_error(ours.latents, expected.latents)
    levels = np.abs(ours.frames.astype(np.int16) - expected.frames.astype(np.int16)).max()
    print(f"end to end, 3 steps: latents {error:.2e}, frames within {levels} level(s)")
    # Euler steps under guidance rising to the preset's max_guidance_scale amplify a UNet difference as DDIM's do
    assert error < sampling_tolerance(3, opts.max_guidance_scale) and levels <= 1


def test_each_family_has_its_onnxruntime_backend(svd_export, exported):
    _, out, _ = svd_export
    with pytest.raises(UsageError, match="tiny-svd does not support StaticShapeBackend"):
        StaticShapeBackend(OnnxRuntimeGraphs(out))
    assert isinstance(open_onnxruntime(exported[0]), StaticShapeBackend)


def test_the_command_line_exports_at_the_presets_size_only(run_cli, tmp_path):
    code, _, err = run_cli(["export", "--res", "tiny-svd", "--height", "128", "-o", str(tmp_path / "e")])
    assert code == 2 and err.strip() == "dcrt: error: tiny-svd is exported at its own size, 64x64"
