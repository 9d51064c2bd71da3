"""The one probe of the machine (dcrt.environment): torch-free at import, and it never raises."""

import subprocess
import sys

from dcrt.environment import cuda_gpus, ort_providers, package_version


def test_probe_modules_import_without_torch():
    code = "import sys, dcrt.environment, dcrt.info, dcrt.backends.select; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_probe_answers_on_this_machine():
    gpus, why = cuda_gpus()
    assert bool(gpus) != bool(why)
    assert "CPUExecutionProvider" in ort_providers()
    assert package_version("onnx")[0] and package_version("onnx")[1] == ""
    assert package_version("dcrt_absent") == (None, "ModuleNotFoundError: No module named 'dcrt_absent'")
