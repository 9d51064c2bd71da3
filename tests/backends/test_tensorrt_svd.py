"""Stable Video Diffusion's TensorRT path without TensorRT (tests/_trt_fakes.py): the bundle built from an SVD
export, and the TensorRT backend running the SVD pipeline on fake engines that compute each graph with the
PyTorch reference module, which must give the torch backend's video."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from _trt_fakes import TARGET, FakeAllocator, FakeBuilder, FakeTrt, make_export

import dcrt
import dcrt.backends.tensorrt_backend as trt_backend
from dcrt.artifacts.export import graph_modules, relative_error
from dcrt.artifacts.graphs import io_table
from dcrt.artifacts.tensorrt_build import BuildConfig, build_bundle
from dcrt.backends.tensorrt_backend import TensorRTGraphs, open_tensorrt
from dcrt.errors import UsageError
from dcrt.families.dynamicrafter.static import StaticShapeBackend
from dcrt.families.svd.options import resolve_svd_options
from dcrt.families.svd.pipeline import SVDPipeline
from dcrt.families.svd.static import StaticSVDBackend
from dcrt.families.svd.torch_backend import TorchSVDBackend


@pytest.fixture
def svd_bundle(tmp_path):
    make_export(tmp_path / "export", preset="tiny-svd")
    builder = FakeBuilder()
    report = build_bundle(tmp_path / "export", tmp_path / "engines", BuildConfig(), TARGET, builder=builder)
    return report, builder


def test_build_makes_every_svd_engine_with_fp32_softmax_in_the_vae(svd_bundle):
    report, builder = svd_bundle
    assert set(report.built) == set(io_table(dcrt.get_preset("tiny-svd")))
    softmax = {name: lifted for name, lifted, _ in builder.calls}
    assert softmax["vae_decoder"] and softmax["vae_decoder_tail"] and softmax["vae_encoder"]
    assert not softmax["unet"] and not softmax["image_encoder"]
    assert report.directory.name == "tiny-svd" and not list(report.directory.glob("*.safetensors"))


@pytest.fixture
def on_fake_engines(monkeypatch):
    """The TensorRT backend on the CPU: fake TensorRT, target and allocator, torch buffers on the CPU, and a
    stand-in for torch's current CUDA stream."""
    monkeypatch.setattr(trt_backend, "_torch_cuda_device", lambda device: torch.device("cpu"))
    fake = functools.partial(trt_backend.EngineSet, trt=FakeTrt("tiny-svd"), target=TARGET, allocate=FakeAllocator())
    monkeypatch.setattr(trt_backend, "EngineSet", fake)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: type("Stream", (), {"cuda_stream": 7})())


def _engines_compute_with(backend, model) -> list[str]:
    """Each engine's enqueue computes its graph with the reference module, from its bound input buffers into its
    bound output buffers (what a real engine does); returns the log of enqueued components."""
    graphs, enqueued, io = graph_modules(model, torch.float32), [], backend.graphs.io
    for name, runner in backend.graphs.engines.runners.items():

        def enqueue(stream, name=name, spec=runner.spec):
            assert stream == 7  # the caller's stream
            enqueued.append(name)
            with torch.no_grad():
                out = graphs[name](*(io[(name, t.name)] for t in spec.inputs))
            io[(name, spec.outputs[0].name)].copy_(out)

        runner.enqueue = enqueue
    return enqueued


def test_the_tensorrt_backend_runs_the_svd_pipeline(svd_bundle, on_fake_engines):
    report, _ = svd_bundle
    backend = open_tensorrt(report.directory)
    assert isinstance(backend, StaticSVDBackend) and backend.capturable and backend.decode_chunks == (4,)
    model = dcrt.random_svd_model("tiny-svd", seed=0)
    enqueued = _engines_compute_with(backend, model)
    image = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    opts = resolve_svd_options(model.preset, steps=2)
    video = SVDPipeline(backend, cuda_graph=False).generate(image, opts)
    assert enqueued == ["image_encoder", "vae_encoder", "unet", "unet", "vae_decoder", "vae_decoder_tail"]
    expected = SVDPipeline(TorchSVDBackend(model)).generate(image, opts)
    assert relative_error(video.latents, expected.latents) < 1e-5
    assert np.abs(video.frames.astype(int) - expected.frames.astype(int)).max() <= 1
    # The graph runner's body on the same engines (on CUDA it is captured: copies + enqueue on one stream).
    again = SVDPipeline(backend, cuda_graph=True).generate(image, opts)
    assert relative_error(again.latents, expected.latents) < 1e-5


def test_each_family_has_its_tensorrt_backend(svd_bundle, on_fake_engines):
    report, _ = svd_bundle
    with pytest.raises(UsageError, match="tiny-svd does not support StaticShapeBackend"):
        StaticShapeBackend(TensorRTGraphs(report.directory))


def test_the_command_line_builds_svd(run_cli, monkeypatch, tmp_path):
    # `dcrt build --res tiny-svd` exports (fp16) and builds through dcrt.artifacts.tensorrt_build: here with the
    # fake builder.
    import dcrt.artifacts.engine_bundle
    import dcrt.artifacts.tensorrt_build

    calls = []
    monkeypatch.setattr(dcrt.artifacts.engine_bundle, "detect_target", lambda device=0: TARGET)
    monkeypatch.setattr(
        dcrt.artifacts.tensorrt_build,
        "build_bundle",
        lambda export_dir, out, *a, **k: calls.append(export_dir) or _report(out),
    )
    monkeypatch.setattr(
        "dcrt.loading.ensure_export", lambda preset, weights, out, precision, *a, **k: calls.append(precision)
    )
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(["build", "--res", "tiny-svd", "--out", "engines"])
    assert code == 0, err
    assert calls == ["fp16", tmp_path.joinpath("export", "tiny-svd-fp16").relative_to(tmp_path)]


def _report(out):
    from dcrt.artifacts.tensorrt_build import BuildReport

    return BuildReport(out, {}, [])
