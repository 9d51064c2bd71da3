"""The AOTInductor build and `--backend aoti` without building any package: options, errors, backend choice."""

import pytest
import torch
from _trt_fakes import make_export

import dcrt
from dcrt.artifacts.aoti_bundle import AotiManifest, AotiTarget
from dcrt.backends.machine_facts import MachineFacts
from dcrt.backends.select import choose_backend
from dcrt.errors import BackendUnavailable, UsageError
from dcrt.weights import Weights


def test_explicit_aoti_without_packages_says_how_to_build(tmp_path, run_cli):
    from PIL import Image

    Image.new("RGB", (64, 64)).save(tmp_path / "x.png")
    args = ["animate", str(tmp_path / "x.png"), "y", "--res", "tiny", "--backend", "aoti", "--engines", str(tmp_path)]
    code, _, err = run_cli(args)
    assert code == 2 and err.count("\n") == 1
    assert "no AOTInductor packages of preset tiny" in err and "dcrt build --res tiny --engine aoti" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--engine", "onnx"], "unknown engine 'onnx'; choose trt or aoti"),
        (["--engine", "aoti", "--opt-level", "5"], "--opt-level is a TensorRT option: not for aoti"),
        (["--engine", "aoti", "--precision", "fp8"], "unknown precision 'fp8'; choose fp32, fp16"),
        (["--engine", "aoti", "--device", "tpu"], "unknown device 'tpu'"),
        (["--native"], "--device, --native, --precision and --jobs are for --engine aoti"),
        (["--engine", "aoti", "--jobs", "0"], "--jobs must be at least 1, got 0"),
    ],
)
def test_bad_build_options_are_one_line(run_cli, tmp_path, args, message):
    code, _, err = run_cli(["build", "--res", "tiny", "--out", str(tmp_path), *args])
    assert code == 2 and message in err and err.count("\n") == 1, err


def test_cuda_packages_without_a_gpu_are_one_line(run_cli, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = run_cli(["build", "--res", "tiny", "--engine", "aoti", "--device", "cuda", "--out", str(tmp_path)])
    assert code != 0 and "--device cuda: no CUDA GPU is visible" in err and err.count("\n") == 1, err
    assert not any(tmp_path.iterdir())  # refused before any work


def test_missing_compiler_is_one_line():
    from torch._inductor import config

    from dcrt.artifacts.aoti_build import check_compiler

    with config.patch({"cpp.cxx": ("no-such-compiler",)}):
        with pytest.raises(BackendUnavailable, match=r"AOTInductor needs a C\+\+ compiler") as raised:
            check_compiler()
    assert "\n" not in str(raised.value)


# ------------------------------------------------------------------------------------- --backend auto and aoti

TINY = dcrt.get_preset("tiny")
CPU_AVX2 = AotiTarget("cpu", "avx2", "2.14.1")
CPU_NATIVE = AotiTarget("cpu", "native-some-cpu", "2.14.1")
CUDA = AotiTarget("cuda", "sm90", "2.14.1")
GPU = dict(gpu="NVIDIA H100", gpu_why="")


def _aoti_bundle(root, target, source="random:tiny:seed0"):
    """A bundle's manifest alone: what backend selection reads (loading checks the files)."""
    directory = root / target.dirname / "tiny"
    directory.mkdir(parents=True)
    AotiManifest("tiny", 64, 64, target.device, target.isa, target.torch_version, "fp32", "0", source).write(directory)
    return directory


def _choose(root, export_dir, facts, requested="auto", device=None):
    return choose_backend(TINY, requested, root, export_dir, facts, device, weights=Weights("tiny"))


def test_auto_takes_cpu_packages_after_onnx_runtime_and_native_before_avx2(tmp_path):
    """The CPU order measured side by side (docs/backends.md): an export first, then packages, then eager."""
    facts = MachineFacts(aoti=(CPU_NATIVE, CPU_AVX2))
    portable = _aoti_bundle(tmp_path, CPU_AVX2)
    choice = _choose(tmp_path, tmp_path / "export", facts)  # no export: the packages
    assert (choice.name, choice.device, choice.location) == ("aoti", "cpu", portable)
    native = _aoti_bundle(tmp_path, CPU_NATIVE)
    assert _choose(tmp_path, tmp_path / "export", facts).location == native
    assert _choose(tmp_path, tmp_path / "export", facts, "aoti").location == native
    make_export(tmp_path / "export")
    choice = _choose(tmp_path, tmp_path / "export", facts)
    assert choice.name == "ort" and "AOTInductor" not in choice.reason  # ONNX Runtime comes first on a CPU


def test_auto_on_a_gpu_takes_cuda_packages_after_tensorrt_before_torch(tmp_path):
    facts = MachineFacts(aoti=(CUDA, CPU_AVX2), **GPU)
    _aoti_bundle(tmp_path, CPU_AVX2)
    choice = _choose(tmp_path, tmp_path / "export", facts)
    assert (choice.name, choice.device) == ("torch", "cuda")  # CUDA before CPU packages
    cuda = _aoti_bundle(tmp_path, CUDA)
    choice = _choose(tmp_path, tmp_path / "export", facts)
    assert (choice.name, choice.device, choice.location) == ("aoti", "cuda", cuda)
    assert _choose(tmp_path, tmp_path / "export", facts, device="cpu").device == "cpu"  # --device cpu: CPU ones
    assert _choose(tmp_path, tmp_path / "export", facts, "aoti", device="cpu").location.parent.name.startswith(
        "aoti-cpu-avx2"
    )


def test_packages_of_other_weights_are_passed_over_or_refused(tmp_path):
    _aoti_bundle(tmp_path, CPU_AVX2, source="sha256:" + "0" * 64)
    facts = MachineFacts(aoti=(CPU_AVX2,))
    choice = _choose(tmp_path, tmp_path / "export", facts)
    assert (
        choice.name == "torch"
        and "not using" in choice.notices[0]
        and "--engine aoti --device cpu" in choice.notices[0]
    )
    with pytest.raises(UsageError, match="was made from .*, not random:tiny:seed0"):
        _choose(tmp_path, tmp_path / "export", facts, "aoti")


def test_bundle_folder_names_say_device_isa_and_torch():
    assert AotiTarget("cpu", "avx2", "2.14.1+cu130").dirname == "aoti-cpu-avx2-torch2.14.1-cu130"
    assert CUDA.dirname == "aoti-cuda-sm90-torch2.14.1"
