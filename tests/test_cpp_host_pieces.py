"""The C++ host's pieces (cpp_host/), each against the Python reference it reproduces: the schedule, guidance +
DDIM step, CLIP preprocessing, frames, image decoding with dcrt's resize and crop, the CLIP tokenizer and the seeded
noise. Built once per session with the rest of the host (tests/cpp_host_support.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cpp_host_support import check
from safetensors.torch import save_file

from dcrt.artifacts.host_files import host_fields, write_host_files
from dcrt.families.dynamicrafter.host import host_noise
from dcrt.families.dynamicrafter.options import resolve_options
from dcrt.families.dynamicrafter.sampler import Guidance, combine_guidance, ddim_step
from dcrt.families.dynamicrafter.schedule import build_ddim_schedule, schedule_tensors
from dcrt.images import load_image, to_uint8_frames
from dcrt.models.clip import clip_pixels
from dcrt.models.tokenizer import Tokenizer
from dcrt.presets import get_preset


def schedule_file(tmp_path: Path, preset: str) -> Path:
    path = tmp_path / "schedule.safetensors"
    save_file(schedule_tensors(get_preset(preset).diffusion), path)
    return path


CASES = [
    ("tiny", "v", 5, "uniform_trailing", 1.0),
    ("tiny-256", "eps", 16, "uniform", 0.5),  # 17 steps: the uniform spacing's quirk
    ("512", "v", 50, "uniform_trailing", 0.0),
]


@pytest.mark.parametrize("preset, kind, steps, spacing, eta", CASES)
def test_schedule_matches_python(host_build, tmp_path, preset, kind, steps, spacing, eta):
    path = schedule_file(tmp_path, preset)
    check(host_build, "schedule", path, kind, steps, spacing, eta, tmp_path)
    diffusion = get_preset(preset).diffusion
    ref = build_ddim_schedule(schedule_tensors(diffusion), diffusion, steps, spacing, eta)
    np.testing.assert_array_equal(np.load(tmp_path / "timesteps.npy"), ref.timesteps.numpy())
    # Equal to one ulp: torch's CPU float32 sqrt is not always correctly rounded (0.7300432 -> 0.85442561, where
    # std::sqrt and numpy give the nearest float, 0.85442567); 1 of 400 coefficients differs this way.
    np.testing.assert_array_max_ulp(np.load(tmp_path / "table.npy"), ref.table().numpy(), maxulp=1)


def python_step(out, x, noise, guidance, schedule, i):
    return ddim_step(x, combine_guidance(out, guidance), noise, schedule.at(i))


STEPS = [  # (guidance scale, image guidance scale, rescale, eta, batch)
    (7.5, None, 0.0, 1.0, 1),
    (7.5, None, 0.7, 1.0, 1),
    (5.0, 2.0, 0.7, 0.0, 2),
    (1.0, None, 0.0, 1.0, 1),
]


@pytest.mark.parametrize("scale, image_scale, rescale, eta, batch", STEPS)
def test_step_matches_python(host_build, tmp_path, scale, image_scale, rescale, eta, batch):
    """Guidance combine + DDIM update at a middle step: bit for bit without rescale; with it, the std ratio
    is summed in another order than torch's (a few ulp)."""
    diffusion = get_preset("tiny").diffusion
    path = schedule_file(tmp_path, "tiny")
    schedule = build_ddim_schedule(schedule_tensors(diffusion), diffusion, 5, "uniform_trailing", eta)
    guidance = Guidance(scale, image_scale, rescale)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 4, 16, 8, 8, generator=g)
    out = torch.randn(guidance.branches * batch, 4, 16, 8, 8, generator=g)
    noise = torch.randn(x.shape, generator=g) if eta > 0 else None
    for name, value in (("out", out), ("x", x), ("noise", noise)):
        if value is not None:
            np.save(tmp_path / f"{name}.npy", value.numpy())
    noise_arg = tmp_path / "noise.npy" if noise is not None else "-"
    args = ["step", path, "v", 5, "uniform_trailing", eta, 2, tmp_path / "out.npy", tmp_path / "x.npy", noise_arg]
    check(host_build, *args, scale, "-" if image_scale is None else image_scale, rescale, tmp_path / "r.npy")
    ref = python_step(out, x, noise, guidance, schedule, 2).numpy()
    if rescale > 0:
        np.testing.assert_allclose(np.load(tmp_path / "r.npy"), ref, rtol=1e-5, atol=1e-6)
    else:
        np.testing.assert_array_equal(np.load(tmp_path / "r.npy"), ref)


@pytest.mark.parametrize("size", [(64, 64), (320, 512), (224, 224)])
def test_clip_pixels_matches_python(host_build, tmp_path, size):
    """Upsampling (tiny), the antialiased downsampling of the released sizes, and the identity size."""
    image = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(2)) * 2 - 1
    np.save(tmp_path / "image.npy", image.numpy())
    check(host_build, "clip", tmp_path / "image.npy", 224, tmp_path / "clip.npy")
    ref = clip_pixels(image, get_preset("tiny").image).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "clip.npy"), ref, rtol=0, atol=2e-5)


def test_frames_match_python(host_build, tmp_path):
    video = torch.randn(3, 3, 16, 24, generator=torch.Generator().manual_seed(3)) * 1.2
    np.save(tmp_path / "video.npy", video.numpy())
    check(host_build, "frames", tmp_path / "video.npy", tmp_path / "frames.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "frames.npy"), to_uint8_frames(video))


IMAGES = [  # (file size H x W, format, PIL mode, target H x W)
    ((90, 120), "jpg", "RGB", (64, 64)),  # landscape JPEG: the shorter side down to 64, then a centre crop
    ((300, 200), "jpg", "L", (64, 64)),  # grey JPEG, portrait
    ((37, 91), "png", "RGBA", (64, 64)),  # upsampled; partly transparent: composited on white
    ((75, 100), "png", "P", (64, 64)),  # palette
    ((64, 64), "png", "LA", (64, 64)),  # the target size: no resize
    ((99, 99), "png", "RGB", (64, 64)),  # an odd crop offset (Python's round, half to even)
    ((40, 50), "jpg", "RGB", (64, 96)),  # wider target than the resized image: zero padding, as CenterCrop pads
    ((480, 640), "png", "RGB", (320, 512)),  # the 512 preset's size
]


@pytest.mark.parametrize("size, fmt, mode, target", IMAGES)
def test_image_pixels_match_python(host_build, tmp_path, size, fmt, mode, target):
    """An image file of any size reads, resizes and crops as dcrt.images.load_image does: exactly (PIL's resample
    ported to C++, libjpeg's decoder with PIL's settings)."""
    from PIL import Image

    h, w = size
    y, x = np.mgrid[0:h, 0:w]
    noise = np.random.default_rng(4).integers(0, 80, (h, w, 3))
    rgb = (np.stack([x * 200 / w, y * 200 / h, np.full((h, w), 90)], -1) + noise).clip(0, 255).astype(np.uint8)
    image = Image.fromarray(rgb, "RGB")
    image = image.convert(mode) if mode != "RGBA" else Image.fromarray(np.dstack([rgb, rgb[..., :1]]), "RGBA")
    path = tmp_path / f"image.{fmt}"
    image.save(path)
    check(host_build, "pixels", path, *target, tmp_path / "pixels.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "pixels.npy"), load_image(path, *target).numpy())


# Prompts that exercise every step of open_clip's cleaning and splitting (tokenizer.cpp).
PROMPTS = [
    "",
    "a boat",
    "A Boat Sailing, at SUNSET!!!",
    "  lots   of\t\twhitespace \n\n and\u00a0nbsp\u3000ideographic  ",
    "it's they're we've I'm you'll he'd don't 'quoted' ''s",
    'punctuation: ...!?;:,()[]{}<>@#$%^&*-_=+|\\/~`"',
    "numbers 12345 3.14159 1,000,000 \u00bd \u00b2 \u0663",
    "caf\u00e9 na\u00efve \u00fcber stra\u00dfe \u03a9\u03bc\u03ad\u03b3\u03b1 \u039f\u0394\u039f\u03a3 "
    "\u0440\u0443\u0441\u0441\u043a\u0438\u0439 \u65e5\u672c\u8a9e \ud55c\uad6d\uc5b4",
    "e\u0301 combining, \ufb01ne \ufb02our \u0133ssel \u0130stanbul \u01c5emal \u0149",
    "emoji \U0001f680\U0001f30a\u26f5\ufe0f \U0001f469\u200d\U0001f469\u200d\U0001f467 \U0001f44d\U0001f3fd "
    "\U0001f1eb\U0001f1f7 \u2764\ufe0f",
    "curly \u2018quotes\u2019 and \u201cdouble\u201d \u2013 dash \u2014 ellipsis\u2026",
    "\uff26\uff35\uff2c\uff2c\uff37\uff29\uff24\uff34\uff28 \uff54\uff45\uff58\uff54 \uff11\uff12\uff13 "
    "\uff76\uff80\uff76\uff85",
    "html &amp; &lt;tag&gt; &#233; &#x1F680; &amp;amp; &quot;q&quot;",
    "word " * 100,  # past 77 tokens: truncated, the last id the end token
    "a" * 300,
    "<start_of_text> special <end_of_text> tokens",
    "tab\tnew\nline\r\nreturn\x0bvt \x1b[31mred\x1b[0m",
    "mixed123abc 4x4 v2.0 C++ O'Neil",
]


def test_tokenizer_matches_python(host_build, tmp_path):
    """The C++ tokenizer, on the vocabulary `dcrt build` writes into a bundle, gives dcrt's token ids."""
    length = get_preset("tiny").text.context_length
    write_host_files(tmp_path, host_fields(get_preset("tiny")))
    (tmp_path / "prompts.json").write_text(json.dumps(PROMPTS))
    vocabulary = tmp_path / host_fields(get_preset("tiny"))["tokenizer"]
    check(host_build, "tokens", vocabulary, tmp_path / "prompts.json", length, tmp_path / "ids.npy")
    ids, ref = np.load(tmp_path / "ids.npy"), Tokenizer(length)(PROMPTS).numpy()
    for prompt, got, want in zip(PROMPTS, ids, ref, strict=True):
        np.testing.assert_array_equal(got, want, err_msg=repr(prompt))
    assert Tokenizer(length).token_count(PROMPTS[13]) > length  # the corpus does reach past the context


@pytest.mark.parametrize("seed, steps, eta", [(123, 5, 1.0), (0, 3, 0.0), (2**64 - 1, 4, 0.5)])
def test_noise_matches_python(host_build, tmp_path, seed, steps, eta):
    """Every draw the Python pipeline makes, in order (x_T, then one per step when eta > 0), from libtorch's CPU
    generator seeded as torch.Generator().manual_seed(seed): bit for bit."""
    preset = get_preset("tiny")
    opts = resolve_options(preset, "animate", steps=steps, seed=seed, eta=eta)
    ref = host_noise(preset, opts)  # dcrt.families.common.NoiseSource, as Pipeline.sample draws
    draws, _, c, t, h, w = ref.shape
    assert draws == (1 + steps if eta > 0 else 1)
    check(host_build, "noise", seed, draws, c, t, h, w, tmp_path / "noise.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "noise.npy"), ref)
