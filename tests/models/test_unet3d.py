import pytest
import torch

from dcrt.models.unet3d import UNet3D


def _inputs(batch: int = 1, frames: int = 16, ctx: int = 64, size: int = 8):
    x = torch.randn(batch, 8, frames, size, size)
    t = torch.randint(0, 1000, (batch,))
    context = torch.randn(batch, 77 + 16 * frames, ctx)
    frame_stride = torch.randint(1, 30, (batch,))
    return x, t, context, frame_stride


def test_output_shape_and_finite(tiny_model):
    x, t, context, frame_stride = _inputs()
    out = tiny_model.unet(x, t, context, frame_stride)
    assert out.shape == (1, 4, 16, 8, 8) and torch.isfinite(out).all()


def test_cfg_batch_equals_separate_calls(tiny_model):
    # Every temporal / normalisation op acts within a batch element, so batching CFG branches is exact.
    x, t, context, frame_stride = _inputs()
    uncond = torch.randn_like(context)
    both = tiny_model.unet(x.repeat(2, 1, 1, 1, 1), t.repeat(2), torch.cat([context, uncond]), frame_stride.repeat(2))
    torch.testing.assert_close(both[:1], tiny_model.unet(x, t, context, frame_stride), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(both[1:], tiny_model.unet(x, t, uncond, frame_stride), rtol=1e-5, atol=1e-5)


def test_frames_interact_only_through_temporal_layers(tiny_model):
    x, t, context, frame_stride = _inputs()
    base = tiny_model.unet(x, t, context, frame_stride)
    x2 = x.clone()
    x2[:, :, 15] += 1.0
    changed = (tiny_model.unet(x2, t, context, frame_stride) - base).abs().amax(dim=(0, 1, 3, 4))
    assert (changed > 1e-4).all()  # temporal attention spreads a change in the last frame to every frame


def test_image_tokens_are_split_per_frame(tiny_model):
    # Frame f sees image tokens 16f..16f+15 only: changing frame 3's tokens changes frame 3 first.
    unet: UNet3D = tiny_model.unet
    context = torch.randn(2, 77 + 256, 64)
    per_frame = unet.frame_context(context, 16)
    assert per_frame.shape == (32, 93, 64)
    torch.testing.assert_close(per_frame[16 + 3, 77:], context[1, 77 + 48 : 77 + 64])
    torch.testing.assert_close(per_frame[16 + 3, :77], context[1, :77])
    other = unet.frame_context(torch.randn(2, 77 + 5, 64), 16)  # any other length: shared by every frame
    assert other.shape == (32, 82, 64)


def test_fs_changes_the_output(tiny_model):
    x, t, context, _ = _inputs()
    a = tiny_model.unet(x, t, context, torch.tensor([3]))
    b = tiny_model.unet(x, t, context, torch.tensor([24]))
    assert (a - b).abs().max() > 1e-4
    default = tiny_model.unet(x, t, context, None)
    torch.testing.assert_close(default, tiny_model.unet(x, t, context, torch.tensor([24])))


def test_learnable_alpha_scales_the_image_branch(tiny_256_model):
    x, t, context, frame_stride = _inputs()
    base = tiny_256_model.unet(x, t, context, frame_stride)
    attn = tiny_256_model.unet.input_blocks[1][1].transformer_blocks[0].attn2
    saved = attn.alpha.clone()
    attn.alpha.fill_(-30.0)  # tanh -> -1: the image branch of this layer vanishes
    try:
        assert (tiny_256_model.unet(x, t, context, frame_stride) - base).abs().max() > 1e-5
    finally:
        attn.alpha.copy_(saved)


# Relative-error budgets per precision for one UNet call on random weights: fp16 keeps 11 mantissa bits,
# bf16 8 (about 8x coarser); measured 0.006 and 0.030.
@pytest.mark.parametrize("dtype, tolerance", [(torch.float16, 1.5e-2), (torch.bfloat16, 6e-2)])
def test_half_precision_unet_is_close_to_fp32(tiny_model, dtype, tolerance):
    import copy

    half = copy.deepcopy(tiny_model).place("cpu", dtype)
    x, t, context, frame_stride = _inputs()
    ref = tiny_model.unet(x, t, context, frame_stride)
    out = half.unet(x, t, context, frame_stride).float()
    assert ((out - ref).norm() / ref.norm()) < tolerance
