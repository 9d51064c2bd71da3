import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import dcrt
from dcrt.families.dynamicrafter.flops import unet_flops
from dcrt.models.unet3d import UNet3D


def counted(preset_name: str, batch: int = 1) -> int:
    """PyTorch's per-module count of one forward, on the meta device (shapes only: free at full size)."""
    p = dcrt.get_preset(preset_name)
    with torch.device("meta"):
        unet = UNet3D(p.unet)
        args = (
            torch.randn(batch, 8, p.frames, p.latent_height, p.latent_width),
            torch.zeros(batch, dtype=torch.long),
            torch.randn(batch, 77 + 16 * p.frames, p.unet.context_dim),
            torch.zeros(batch, dtype=torch.long),
        )
        with FlopCounterMode(display=False) as counter:
            unet(*args)
    return counter.get_total_flops()


@pytest.mark.parametrize("preset", ["1024", "512", "256", "tiny"])
def test_analytic_count_matches_the_per_module_count(preset):
    analytic, measured = unet_flops(dcrt.get_preset(preset)), counted(preset)
    assert abs(analytic / measured - 1) < 0.01  # measured: 0.002% off at 1024, 0.16% on tiny


def test_1024_is_about_52_tflop_per_forward():
    assert unet_flops(dcrt.get_preset("1024")) / 1e12 == pytest.approx(52.3, abs=0.1)
    assert unet_flops(dcrt.get_preset("1024"), batch=2) == 2 * unet_flops(dcrt.get_preset("1024"))
