"""Full-size ONNX export (marked `full`: ~10-30 min and ~20 GB of RAM per preset on a CPU).

`python benchmarks/export_full.py --preset 256 --preset 512` runs the same export from a random
checkpoint file and records wall time, peak RSS, file sizes and parity.
"""

import pytest

import dcrt
from dcrt.export import ExportRequest, export_model


@pytest.mark.full
@pytest.mark.parametrize("preset", ["256", "512"])
def test_full_size_export_matches_pytorch(preset, tmp_path):
    model = dcrt.random_model(preset, seed=0)
    manifest = export_model(model, tmp_path / preset, ExportRequest(model.preset, "fp32", f"random:{preset}:seed0"))
    assert (tmp_path / preset / "unet.onnx.data").is_file()  # 5.8 GB of weights: one external-data file
    for name, entry in manifest.components.items():
        assert entry.parity["rel_error"] < 1e-4, name
