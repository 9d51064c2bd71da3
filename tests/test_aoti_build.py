"""The AOTInductor build and `--backend aoti` without building any package: options, errors, backend choice."""

import pytest
import torch

from dcrt.errors import BackendUnavailable


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

    from dcrt.aoti_builder import check_compiler

    with config.patch({"cpp.cxx": ("no-such-compiler",)}):
        with pytest.raises(BackendUnavailable, match=r"AOTInductor needs a C\+\+ compiler") as raised:
            check_compiler()
    assert "\n" not in str(raised.value)
