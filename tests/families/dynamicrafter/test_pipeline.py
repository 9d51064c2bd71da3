import numpy as np
import pytest
import torch
from PIL import Image

import dcrt
from dcrt.errors import UsageError
from dcrt.families.dynamicrafter.pipeline import Pipeline
from dcrt.families.dynamicrafter.torch_backend import TorchBackend
from dcrt.images import load_image, open_image


class CountingBackend(TorchBackend):
    """The torch backend, counting how often (and with what batch) each network runs."""

    def __init__(self, model):
        super().__init__(model)
        self.calls: dict[str, list[int]] = {}

    def _count(self, name, batch):
        self.calls.setdefault(name, []).append(batch)

    def encode_text(self, tokens):
        self._count("text", tokens.shape[0])
        return super().encode_text(tokens)

    def encode_image(self, pixels):
        self._count("image", pixels.shape[0])
        return super().encode_image(pixels)

    def unet(self, x, t, context, frame_stride):
        self._count("unet", x.shape[0])
        return super().unet(x, t, context, frame_stride)

    def encode_latents(self, frames):
        self._count("vae_encode", frames.shape[0])
        return super().encode_latents(frames)


@pytest.fixture
def image():
    return (np.random.default_rng(0).random((48, 80, 3)) * 255).astype(np.uint8)


def test_animate_shapes_and_no_waste(tiny_model, image):
    backend = CountingBackend(tiny_model)
    pipe = Pipeline(backend)
    result = dcrt.animate(pipe, image, "a cat", steps=3)
    assert result.latents.shape == (1, 4, 16, 8, 8) and result.latents.dtype == torch.float32
    assert result.frames.shape == (16, 64, 64, 3) and result.frames.dtype == np.uint8
    assert backend.calls["unet"] == [2, 2, 2]  # cond + uncond batched, one call per step
    assert backend.calls["vae_encode"] == [1]  # the conditioning image once, not 16 times
    assert backend.calls["text"] == [1, 1] and backend.calls["image"] == [1, 1]  # prompt + "", image + grey
    dcrt.animate(pipe, image, "a dog", steps=3)
    assert backend.calls["text"] == [1, 1, 1] and backend.calls["image"] == [1, 1, 1]  # unconditional cached


def test_interpolate_and_loop(tiny_model, image):
    backend = CountingBackend(tiny_model)
    pipe = Pipeline(backend)
    inter = dcrt.interpolate(pipe, image, image[::-1].copy(), "a cat", steps=2, image_guidance_scale=2.0)
    assert inter.frames.shape[0] == 16
    assert backend.calls["vae_encode"] == [2]  # the two key frames together
    assert backend.calls["unet"] == [3, 3]  # three-way guidance in one batch
    looped = dcrt.loop(pipe, image, "a cat", steps=2)
    assert looped.frames.shape[0] == 15  # the repeated last frame is dropped


def test_same_seed_same_bytes_other_seed_differs(tiny_model, image):
    a = dcrt.animate(tiny_model, image, "a cat", steps=2, seed=1)
    b = dcrt.animate(tiny_model, image, "a cat", steps=2, seed=1)
    c = dcrt.animate(tiny_model, image, "a cat", steps=2, seed=2)
    assert a.frames.tobytes() == b.frames.tobytes()
    assert not np.array_equal(a.frames, c.frames)


def test_x_T_is_used(tiny_model, image):
    x_T = torch.randn(1, 4, 16, 8, 8)
    a = dcrt.animate(tiny_model, image, "a cat", steps=2, eta=0.0, x_T=x_T, seed=1)
    b = dcrt.animate(tiny_model, image, "a cat", steps=2, eta=0.0, x_T=x_T, seed=2)
    torch.testing.assert_close(a.latents, b.latents)  # eta = 0: the seed no longer matters
    with pytest.raises(UsageError, match="x_T must have shape"):
        dcrt.animate(tiny_model, image, "a cat", steps=2, x_T=torch.randn(1, 4, 16, 4, 4))


def test_mode_must_suit_the_preset():
    pipe = Pipeline(TorchBackend(dcrt.random_model("tiny")))
    object.__setattr__(pipe, "preset", dcrt.get_preset("512"))  # a 512 model cannot interpolate
    with pytest.raises(UsageError, match="cannot interpolate"):
        pipe.generate(
            [np.zeros((64, 64, 3), np.uint8)] * 2,
            "x",
            "interpolate",
            dcrt.families.dynamicrafter.options.resolve_options(pipe.preset),
        )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(steps=0), "steps must be at least 1"),
        (dict(guidance_scale=-1), "guidance scale"),
        (dict(frame_stride=500), "frame stride 500 is out of range"),
        (dict(cfg=2.0), "unknown sampling option"),
        (dict(timestep_spacing="quad"), "unknown timestep spacing"),
        (dict(height=100), "multiples of 64"),
        (dict(eta=-0.5), "eta must be"),
        (dict(guidance_scale=float("inf")), "guidance scale"),
        (dict(seed=2**64), r"seed must be an integer from 0 to 2\*\*64 - 1"),
        (dict(seed=-1), "seed must be"),
    ],
)
def test_bad_options(tiny_model, image, kwargs, message):
    with pytest.raises(UsageError, match=message):
        dcrt.animate(tiny_model, image, "a cat", **kwargs)


def test_long_prompt_warns_and_truncates(tiny_model, image):
    with pytest.warns(UserWarning, match="truncated"):
        dcrt.animate(tiny_model, image, "word " * 100, steps=1)


# --- image inputs -----------------------------------------------------------------------------


def test_every_input_kind_gives_the_same_tensor(tmp_path, image):
    Image.fromarray(image).save(tmp_path / "a.png")
    from_path = load_image(tmp_path / "a.png", 64, 64)
    from_pil = load_image(Image.fromarray(image), 64, 64)
    from_array = load_image(image, 64, 64)
    torch.testing.assert_close(from_path, from_pil)
    torch.testing.assert_close(from_path, from_array)
    assert from_path.shape == (1, 3, 64, 64) and from_path.min() >= -1 and from_path.max() <= 1
    torch.testing.assert_close(load_image(from_path, 64, 64), from_path)  # a tensor at size: identity


def test_other_aspect_ratios_get_black_bars():
    wide = load_image(np.full((480, 640, 3), 255, np.uint8), 320, 512)  # 4:3 -> 426x320, padded to 512
    assert wide[..., :40].max() == -1 and wide[..., 200:300].min() == 1


def test_modes_and_exif(tmp_path):
    rgba = Image.new("RGBA", (64, 64), (255, 0, 0, 0))
    grey = Image.new("L", (64, 64), 128)
    palette = Image.new("P", (64, 64), 3)
    for img in (rgba, grey, palette):
        assert load_image(img, 64, 64).shape == (1, 3, 64, 64)
    with pytest.raises(UsageError, match="unsupported mode 'I;16'"):
        load_image(Image.new("I;16", (64, 64)), 64, 64)
    tall = Image.new("RGB", (64, 128), (0, 255, 0))
    tall.paste((255, 0, 0), (0, 0, 64, 64))  # top half red
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    tall.save(tmp_path / "rot.jpg", exif=exif)
    opened = open_image(tmp_path / "rot.jpg")
    assert opened.size == (128, 64)  # width and height swapped by the EXIF rotation


def test_bad_image_files(tmp_path):
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(UsageError, match="not an image"):
        open_image(tmp_path / "junk.png")
    with pytest.raises(UsageError, match="is a directory"):
        open_image(tmp_path)
    with pytest.raises(UsageError, match="does not exist"):
        open_image(tmp_path / "missing.png")
    with pytest.raises(UsageError, match=r"must be \[1, 3, 64, 64\]"):
        load_image(torch.zeros(1, 3, 32, 32), 64, 64)


@pytest.mark.full
def test_512_preset_small_size_random_weights_completes():
    model = dcrt.random_model("512", seed=0)
    result = dcrt.animate(model, np.zeros((128, 128, 3), np.uint8), "a boat", steps=2, height=128, width=128)
    assert result.frames.shape == (16, 128, 128, 3) and np.isfinite(result.latents.numpy()).all()
