"""`--backend auto` and explicit requests, decided from injected facts about the machine."""

import re
from dataclasses import fields
from pathlib import Path

import pytest
from _trt_fakes import TARGET, FakeBuilder, make_export

import dcrt
from dcrt.artifacts.tensorrt_build import BuildConfig, build_bundle
from dcrt.backends import select
from dcrt.backends.machine_facts import MachineFacts, probe
from dcrt.backends.select import AUTO_ORDER, choose_backend, describe
from dcrt.errors import BackendUnavailable, UsageError
from dcrt.loading import BackendRequest
from dcrt.weights import Weights

TINY = dcrt.get_preset("tiny")
NO_TRT = MachineFacts(tensorrt_why="TensorRT is not available (ModuleNotFoundError)")
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
    choice = choose(dirs, MachineFacts(target=TARGET, tensorrt_why="", ort_cuda=True, **GPU))
    assert (choice.name, choice.device) == ("trt", "cuda")
    assert choice.location == dirs[0] / TARGET.dirname / "tiny" and "NVIDIA H100 80GB HBM3 (sm90)" in choice.reason
    assert describe(choice).startswith("--backend auto uses trt on cuda: TensorRT engines")


def test_auto_without_engines_uses_onnxruntime_gpu_and_says_why(dirs):
    _export(dirs)
    choice = choose(dirs, MachineFacts(target=TARGET, tensorrt_why="", ort_cuda=True, **GPU))
    assert (choice.name, choice.device, choice.location) == ("ort", "cuda", dirs[1])
    assert "no engines in" in choice.reason and "dcrt build --res tiny" in choice.reason


def test_auto_without_trt_or_export_uses_torch_on_cuda(dirs):
    choice = choose(dirs, MachineFacts(tensorrt_why=NO_TRT.tensorrt_why, ort_cuda=True, **GPU))
    assert (choice.name, choice.device) == ("torch", "cuda")
    assert "not TensorRT: TensorRT is not available" in choice.reason and "no export in" in choice.reason


def test_auto_without_gpu_prefers_an_export_on_cpu_then_torch(dirs):
    assert (choose(dirs, NO_TRT).name, choose(dirs, NO_TRT).device) == ("torch", "cpu")
    _export(dirs)
    choice = choose(dirs, NO_TRT)
    assert (choice.name, choice.device) == ("ort", "cpu") and "not CUDA: no CUDA GPU visible" in choice.reason


def test_device_cpu_keeps_auto_off_the_gpu(dirs):
    _engines(dirs)
    choice = choose(dirs, MachineFacts(target=TARGET, tensorrt_why="", ort_cuda=True, **GPU), device="cpu")
    assert (choice.name, choice.device) == ("ort", "cpu") and "--device cpu" in choice.reason


def test_explicit_requests(dirs):
    assert choose(dirs, NO_TRT, "torch", "cpu").name == "torch"
    with pytest.raises(UsageError, match=r"export/tiny does not exist: not a dcrt export \(run `dcrt export`\)"):
        choose(dirs, MachineFacts(ort_cuda=True, **GPU), "ort")
    with pytest.raises(BackendUnavailable, match="--backend trt: TensorRT is not available"):
        choose(dirs, NO_TRT, "trt")
    with pytest.raises(UsageError, match=r"no TensorRT engines of preset tiny .*`dcrt build --res tiny`"):
        choose(dirs, MachineFacts(target=TARGET, tensorrt_why="", **GPU), "trt")
    _engines(dirs)
    assert choose(dirs, MachineFacts(target=TARGET, tensorrt_why="", **GPU), "trt").name == "trt"
    assert choose(dirs, MachineFacts(ort_cuda=True, **GPU), "ort").device == "cuda"
    with pytest.raises(UsageError, match="unknown backend"):
        choose(dirs, NO_TRT, "tensorrt")


def test_probe_on_this_machine_never_raises():
    facts = probe()
    assert (facts.target is None) == bool(facts.tensorrt_why)


def test_auto_passes_over_engines_and_export_made_from_other_weights(dirs, tmp_path):
    _engines(dirs)  # made from random:tiny:seed0
    facts = MachineFacts(target=TARGET, tensorrt_why="", ort_cuda=True, **GPU)
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


# How the order's texts name each runtime.
_RUNTIME_WORDS = {
    "TensorRT": "trt",
    "AOTInductor": "aoti",
    "ONNX Runtime": "ort",
    "onnxruntime-gpu": "ort",
    "PyTorch": "torch",
}


_RUNTIME = re.compile("|".join(map(re.escape, _RUNTIME_WORDS)))
_DEVICE = re.compile(r"CPU|GPU|CUDA|-gpu")  # the CPU, else a GPU ("onnxruntime-gpu" names one)


def _order_in(items: list[str]) -> list[tuple[str, str]]:
    """The (runtime, device) steps that the items of a text of the order name, in order: each runtime an item
    names (once), on the device that the next device word in the item names, or in the items after it when the item
    has none ("TensorRT engines, else AOTInductor packages, else onnxruntime-gpu")."""
    steps = []
    for i, item in enumerate(items):
        named = set()
        for match in _RUNTIME.finditer(item):
            runtime = _RUNTIME_WORDS[match.group()]
            if runtime not in named:
                named.add(runtime)
                device = _DEVICE.search(item, match.start()) or _DEVICE.search(" ".join(items[i + 1 :]))
                steps.append((runtime, "cpu" if device.group() == "CPU" else "cuda"))
    return steps


def test_the_order_written_down_is_the_order_auto_walks():
    table = [(candidate.runtime, candidate.device) for candidate in AUTO_ORDER]
    docs = (Path(__file__).parents[2] / "docs" / "backends.md").read_text()
    section = docs.split("## The order")[1].split("\n## ")[0]
    listed = re.findall(r"^\d+\. (.*)$", section, flags=re.MULTILINE)
    assert _order_in(listed) == table
    assert _order_in(select.__doc__.split("Order: ")[1].split(". Why")[0].split(" > ")) == table
    help_text = next(f.metadata["help"] for f in fields(BackendRequest) if f.name == "backend")
    assert _order_in(help_text.split(";")[0].split(", else ")) == table
