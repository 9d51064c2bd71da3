"""Full-size ONNX export (marked `full`: ~15-45 min and ~27 GB of disk per preset on a CPU).

Both fit in 24 GB of RAM: the 512 case peaks at 12.6 GiB of anonymous memory, most of it the ONNX
Runtime check of the batch-3 UNet (see docs/export.md).

`python benchmarks/export_full.py --preset 256 --preset 512` runs the same export through the CLI
and records wall time, peak RSS, file sizes and parity.
"""

import pytest

import dcrt
from dcrt.artifacts.export import ExportRequest, export_model


@pytest.mark.full
@pytest.mark.parametrize("preset", ["256", "512"])
def test_full_size_export_matches_pytorch(preset, tmp_path):
    # Through a checkpoint file, as users do: its weights are memory-mapped, so the model kept beside
    # the ONNX Runtime checks costs almost no anonymous memory.
    ckpt = dcrt.save_checkpoint(dcrt.random_model(preset, seed=0), tmp_path / "model.ckpt")
    model = dcrt.load_model(ckpt, preset=preset)
    manifest = export_model(model, tmp_path / preset, ExportRequest(model.preset, "fp32", f"random:{preset}:seed0"))
    assert (tmp_path / preset / "unet.onnx.data").is_file()  # 5.8 GB of weights: one external-data file
    assert set(manifest.components) == {
        "text_encoder",
        "image_encoder",
        "unet",
        "unet_image_guidance",
        "vae_encoder",
        "vae_decoder",
    }
    for name, entry in manifest.components.items():
        assert entry.parity["rel_error"] < 1e-4, name
