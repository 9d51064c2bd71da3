"""The SVD pipeline's wiring on the tiny preset (dcrt.families.svd.pipeline, dcrt.families.svd.options, dcrt.animate
for SVD); its numbers against diffusers' pipeline are in tests/models/test_svd_pipeline_parity.py."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

import dcrt
from dcrt.errors import UsageError
from dcrt.families.common import NoiseSource
from dcrt.families.dynamicrafter.options import SamplingRequest
from dcrt.families.dynamicrafter.options import refuse_foreign as refuse_svd_options
from dcrt.families.svd.options import SVDRequest, refuse_foreign, resolve_svd_options
from dcrt.families.svd.pipeline import SVDPipeline
from dcrt.families.svd.torch_backend import TorchSVDBackend
from dcrt.presets import get_preset


@pytest.fixture(scope="module")
def svd_model():
    return dcrt.random_svd_model("tiny-svd", seed=0)


class Recording(TorchSVDBackend):
    """The torch backend, keeping what each network is given."""

    def __init__(self, model):
        super().__init__(model)
        self.unet_calls, self.decoded = [], []

    def unet(self, x, c_noise, context, added_time_ids):
        self.unet_calls.append((x.clone(), c_noise.clone(), context.clone(), added_time_ids.clone()))
        return super().unet(x, c_noise, context, added_time_ids)

    def decode_latents(self, z):
        self.decoded.append(z.shape[0])
        return super().decode_latents(z)


def picture(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)


def test_every_default_comes_from_the_preset():
    preset = get_preset("svd-xt")
    opts = resolve_svd_options(preset)
    s = preset.sampling
    assert (opts.steps, opts.min_guidance_scale, opts.max_guidance_scale, opts.seed) == (25, 1.0, 3.0, s.seed)
    assert opts.added_time_ids() == (s.fps - 1, 127.0, 0.02) and opts.decode_chunk == 14
    assert resolve_svd_options(get_preset("tiny-svd"), SVDRequest(steps=3), fps=10).added_time_ids()[0] == 9.0


@pytest.mark.parametrize(
    "change, message",
    [
        ({"steps": 0}, "steps must be from 1"),
        ({"min_guidance_scale": -1.0}, "min guidance scale"),
        ({"max_guidance_scale": float("nan")}, "max guidance scale"),
        ({"fps": 0}, "fps must be from 1"),
        ({"motion_bucket_id": 256}, "motion bucket must be from 0 to 255"),
        ({"noise_aug_strength": 1.5}, "noise aug must be from 0 to 1"),
        ({"decode_chunk": 7}, "decode chunk must be from 1 to 6"),
        ({"seed": -1}, "seed must be an integer"),
        ({"eta": 1.0}, "unknown sampling option(s) eta for tiny-svd"),
    ],
)
def test_bad_values_are_one_line(change, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve_svd_options(get_preset("tiny-svd"), **change)


def test_options_of_the_other_family_are_refused_by_flag():
    with pytest.raises(UsageError, match="--eta, --frames: DynamiCrafter option"):
        refuse_foreign(get_preset("tiny-svd"), SamplingRequest(eta=1.0, frames=8, steps=3), SVDRequest())
    with pytest.raises(UsageError, match="--motion-bucket: Stable Video Diffusion option"):
        refuse_svd_options(get_preset("tiny"), SamplingRequest(), SVDRequest(motion_bucket_id=3))
    refuse_foreign(get_preset("tiny-svd"), SamplingRequest(steps=3, seed=1), SVDRequest(motion_bucket_id=3))
    with pytest.raises(UsageError, match="does not support Stable Video Diffusion's sampling options"):
        resolve_svd_options(get_preset("tiny"))


def test_conditioning_branches_and_time_ids_reach_the_unet(svd_model):
    backend = Recording(svd_model)
    opts = resolve_svd_options(svd_model.preset, steps=2, motion_bucket_id=40, fps=9, noise_aug_strength=0.1)
    SVDPipeline(backend).sample(picture(), opts)
    x, c_noise, context, time_ids = backend.unet_calls[0]
    assert x.shape == (2, 8, 6, 8, 8) and context.shape == (2, 1, 32)  # both branches in one call
    assert context[1].abs().max() == 0 and x[1, 4:].abs().max() == 0 and context[0].abs().max() > 0
    assert torch.equal(x[0, 4:, 0], x[0, 4:, -1])  # the image latent, repeated over the frames
    assert torch.allclose(time_ids, torch.tensor([[8.0, 40.0, 0.1]] * 2))  # fps 9 -> 8
    assert len(backend.unet_calls) == 2 and c_noise[0] > backend.unet_calls[1][1][0]  # sigma falls


def test_no_guidance_runs_one_branch(svd_model):
    backend = Recording(svd_model)
    opts = resolve_svd_options(svd_model.preset, steps=1, min_guidance_scale=1.0, max_guidance_scale=1.0)
    SVDPipeline(backend).sample(picture(), opts)
    assert backend.unet_calls[0][0].shape[0] == 1


def test_seeded_draws_come_in_the_documented_order(svd_model):
    # Augmentation noise [1, 3, H, W] first, then x_T drawn frame-major: with x_T handed in as that second draw,
    # the run is the seeded one.
    pipe = SVDPipeline(TorchSVDBackend(svd_model))
    opts = resolve_svd_options(svd_model.preset, steps=2, seed=11)
    noise = NoiseSource(11, "cpu")
    noise.draw((1, 3, 64, 64))
    x_T = noise.draw((1, 6, 4, 8, 8)).transpose(1, 2)
    seeded = pipe.sample(picture(), opts)
    assert torch.equal(pipe.sample(picture(), opts, x_T=x_T), seeded)
    assert not torch.equal(pipe.sample(picture(), resolve_svd_options(svd_model.preset, steps=2, seed=12)), seeded)
    with pytest.raises(UsageError, match="x_T must have shape"):
        pipe.sample(picture(), opts, x_T=torch.zeros(1, 4, 5, 8, 8))


@pytest.mark.parametrize("chunk, calls", [(4, [4, 2]), (3, [3, 3]), (6, [6])])
def test_decoding_in_chunks_never_pads_the_last(svd_model, chunk, calls):
    backend = Recording(svd_model)
    opts = resolve_svd_options(svd_model.preset, steps=1, decode_chunk=chunk)
    video = SVDPipeline(backend).generate(picture(), opts)
    assert backend.decoded == calls and video.frames.shape == (6, 64, 64, 3) and video.frames.dtype == np.uint8


def test_a_static_backend_refuses_another_chunk_before_any_work(svd_model):
    backend = Recording(svd_model)
    backend.decode_chunks = (4,)
    with pytest.raises(UsageError, match="use --decode-chunk 4"):
        SVDPipeline(backend).sample(picture(), resolve_svd_options(svd_model.preset, decode_chunk=3))
    assert backend.unet_calls == []


def test_the_python_api(svd_model, tmp_path):
    video = dcrt.animate(svd_model, picture(), steps=1, fps=5)
    assert video.frames.shape == (6, 64, 64, 3) and video.fps == 5
    with pytest.warns(UserWarning, match="SVD has no text conditioning; the prompt is ignored"):
        again = dcrt.animate(svd_model, picture(), "a cat", steps=1, fps=5)
    assert np.array_equal(again.frames, video.frames)
    with pytest.raises(UsageError, match="extend is for DynamiCrafter"):
        dcrt.animate(svd_model, picture(), extend=1)
    with pytest.raises(UsageError, match="unknown sampling option"):
        dcrt.animate(svd_model, picture(), guidance_scale=3.0)
    assert "motion_bucket_id" in str(inspect.signature(dcrt.animate))
    import imageio_ffmpeg

    meta = next(imageio_ffmpeg.read_frames(str(video.save(tmp_path / "v.mp4"))))
    assert meta["fps"] == 5


def test_dynamicrafter_still_needs_a_prompt(tiny_model):
    with pytest.raises(UsageError, match="animates following a prompt"):
        dcrt.animate(tiny_model, picture(), steps=1)


def test_ckpt_may_name_a_diffusers_folder(tmp_path):
    # The SVD loader reads the folder itself; a folder without unet/ still means <folder>/svd_xt.safetensors.
    from dcrt.hub import find_checkpoint

    (tmp_path / "release" / "unet").mkdir(parents=True)
    assert find_checkpoint(get_preset("svd-xt"), tmp_path / "release") == tmp_path / "release"
    with pytest.raises(UsageError, match="svd_xt.safetensors does not exist"):
        find_checkpoint(get_preset("svd-xt"), tmp_path)


def test_a_diffusers_folder_is_fingerprinted_for_exports(tmp_path):
    # An export or engine bundle made from a folder records its fingerprint, as for a file (dcrt.weights).
    from dcrt.weights import Weights, made_from

    folder = tmp_path / "release"
    (folder / "unet").mkdir(parents=True)
    (folder / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"u" * 100)
    (folder / "unet" / "config.json").write_text("{}")
    (folder / "README.md").write_text("not weights")
    weights = Weights("svd-xt", folder)
    source, stamp = weights.source(), weights.stamp()
    assert source.startswith("sha256:") and stamp["size"] == 102
    (folder / "README.md").write_text("edited, still not weights")
    assert made_from(Weights("svd-xt", folder), source, stamp)
    (folder / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"v" * 100)
    changed = Weights("svd-xt", folder)
    assert changed.source() != source and not made_from(changed, source, stamp)
