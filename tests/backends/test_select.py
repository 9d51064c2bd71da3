"""`--backend auto` and explicit requests, decided from injected facts about the machine."""

import pytest
from _trt_fakes import TARGET, FakeBuilder, make_export

import dcrt
from dcrt.artifacts.tensorrt_build import BuildConfig, build_bundle
from dcrt.backends.select import Facts, choose_backend, describe, probe
from dcrt.errors import BackendUnavailable, UsageError
from dcrt.weights import Weights

TINY = dcrt.get_preset("tiny")
NO_TRT = Facts(tensorrt_why="TensorRT is not available (ModuleNotFoundError)")
GPU = dict(gpu="NVIDIA H100", gpu_why="")


@pytest.fixture
def dirs(tmp_path):
    return tmp_path / "engines", tmp_path / "export" / "tiny"


def _export(dirs):
    make_export(dirs[1])


def _engines(dirs):
    _export(dirs)
    build_bundle(dirs[1], dirs[0], BuildConfig(), TARGET, builder=FakeBuilder())


def choose(dirs, facts, requested="auto", device=None):
    return choose_backend(TINY, requested, dirs[0], dirs[1], facts, device)


def test_auto_prefers_built_engines(dirs):
    _engines(dirs)
    choice = choose(dirs, Facts(target=TARGET, tensorrt_why="", ort_cuda=True, **GPU))
    assert (choice.name, choice.device) == ("trt", "cuda")
    assert choice.location == dirs[0] / TARGET.dirname / "tiny" and "NVIDIA H100 80GB HBM3 (sm90)" in choice.reason
    assert describe(choice).startswith("--backend auto uses trt on cuda: TensorRT engines")


def test_auto_without_engines_uses_onnxruntime_gpu_and_says_why(dirs):
    _export(dirs)
    choice = choose(dirs, Facts(target=TARGET, tensorrt_why="", ort_cuda=True, **GPU))
    assert (choice.name, choice.device, choice.location) == ("ort", "cuda", dirs[1])
    assert "no engines in" in choice.reason and "dcrt build --res tiny" in choice.reason


def test_auto_without_trt_or_export_uses_torch_on_cuda(dirs):
    choice = choose(dirs, Facts(tensorrt_why=NO_TRT.tensorrt_why, ort_cuda=True, **GPU))
    assert (choice.name, choice.device) == ("torch", "cuda")
    assert "not TensorRT: TensorRT is not available" in choice.reason and "no export in" in choice.reason


def test_auto_without_gpu_prefers_an_export_on_cpu_then_torch(dirs):
    assert (choose(dirs, NO_TRT).name, choose(dirs, NO_TRT).device) == ("torch", "cpu")
    _export(dirs)
    choice = choose(dirs, NO_TRT)
    assert (choice.name, choice.device) == ("ort", "cpu") and "not CUDA: no CUDA GPU visible" in choice.reason


def test_device_cpu_keeps_auto_off_the_gpu(dirs):
    _engines(dirs)
    choice = choose(dirs, Facts(target=TARGET, tensorrt_why="", ort_cuda=True, **GPU), device="cpu")
    assert (choice.name, choice.device) == ("ort", "cpu") and "--device cpu" in choice.reason


def test_explicit_requests(dirs):
    assert choose(dirs, NO_TRT, "torch", "cpu").name == "torch"
    with pytest.raises(UsageError, match=r"export/tiny does not exist: not a dcrt export \(run `dcrt export`\)"):
        choose(dirs, Facts(ort_cuda=True, **GPU), "ort")
    with pytest.raises(BackendUnavailable, match="--backend trt: TensorRT is not available"):
        choose(dirs, NO_TRT, "trt")
    with pytest.raises(UsageError, match=r"no TensorRT engines of preset tiny .*`dcrt build --res tiny`"):
        choose(dirs, Facts(target=TARGET, tensorrt_why="", **GPU), "trt")
    _engines(dirs)
    assert choose(dirs, Facts(target=TARGET, tensorrt_why="", **GPU), "trt").name == "trt"
    assert choose(dirs, Facts(ort_cuda=True, **GPU), "ort").device == "cuda"
    with pytest.raises(UsageError, match="unknown backend"):
        choose(dirs, NO_TRT, "tensorrt")


def test_probe_on_this_machine_never_raises():
    facts = probe()
    assert (facts.target is None) == bool(facts.tensorrt_why)


def test_auto_passes_over_engines_and_export_made_from_other_weights(dirs, tmp_path):
    _engines(dirs)  # made from random:tiny:seed0
    facts = Facts(target=TARGET, tensorrt_why="", ort_cuda=True, **GPU)
    assert choose_backend(TINY, "auto", dirs[0], dirs[1], facts, weights=Weights("tiny")).name == "trt"
    assert choose_backend(TINY, "auto", dirs[0], dirs[1], facts).name == "trt"  # no weights at hand: its own
    other = tmp_path / "other.ckpt"
    other.write_bytes(b"other weights")
    choice = choose_backend(TINY, "auto", dirs[0], dirs[1], facts, weights=Weights("tiny", other))
    assert (choice.name, choice.device, choice.weights) == ("torch", "cuda", str(other))
    notices = choice.notices
    assert [n.split(":")[0] for n in notices] == [
        f"not using {dirs[0] / TARGET.dirname / 'tiny'}",
        f"not using {dirs[1]}",
    ]
    assert all("was made from random:tiny:seed0" in n and f"--ckpt {other}" in n for n in notices)
    assert "dcrt build --res tiny --ckpt" in notices[0] and "dcrt export --res tiny" in notices[1]
    with pytest.raises(UsageError, match=r"was made from random:tiny:seed0, not .*other.ckpt: rebuild it"):
        choose_backend(TINY, "trt", dirs[0], dirs[1], facts, weights=Weights("tiny", other))
