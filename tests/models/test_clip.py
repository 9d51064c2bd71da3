import pytest
import torch

from dcrt.models.clip import antialiased_resize


@pytest.mark.parametrize("size", [(320, 512), (576, 1024), (256, 256), (64, 64), (100, 700)])
def test_resize_matches_kornia(size):
    kornia = pytest.importorskip("kornia", reason="kornia is a [dev] dependency; install it to compare")
    x = torch.rand(2, 3, *size) * 2 - 1
    want = kornia.geometry.resize(x, (224, 224), interpolation="bicubic", align_corners=True, antialias=True)
    torch.testing.assert_close(antialiased_resize(x, (224, 224)), want, rtol=0, atol=1e-5)


def test_constant_image_stays_constant():
    # The unconditional image is mid-grey (zeros in [-1, 1]); bicubic + blur keep a constant constant.
    out = antialiased_resize(torch.zeros(1, 3, 320, 512), (224, 224))
    assert out.abs().max() < 1e-6


def test_tokenizer_pads_with_zero_and_truncates_with_eot(tiny_model):
    tokens = tiny_model.tokenizer(["", "a cat", "word " * 100])
    assert tokens.shape == (3, 77) and tokens.dtype == torch.int64
    assert tokens[0, :3].tolist() == [49406, 49407, 0]
    assert tokens[2, -1].item() == 49407
    assert tiny_model.tokenizer.token_count("word " * 100) == 102


def test_text_encoder_is_causal(tiny_model):
    # Changing a later token never changes the embedding of an earlier position.
    a = tiny_model.text_encoder(tiny_model.tokenizer(["a red cat"]))
    b = tiny_model.text_encoder(tiny_model.tokenizer(["a red dog"]))
    torch.testing.assert_close(a[:, :3], b[:, :3])
    assert (a[:, 3] - b[:, 3]).abs().max() > 1e-4


def test_encode_image_shapes(tiny_model):
    tokens = tiny_model.image_encoder(torch.rand(2, 3, 64, 96) * 2 - 1)
    assert tokens.shape == (2, 257, 64)
    assert tiny_model.encode_image(torch.rand(1, 3, 64, 64) * 2 - 1).shape == (1, 256, 64)
