"""dcrt's SVD UNet inside dcrt's EDM sampler (`dcrt.families.svd.sampler`) against diffusers'
StableVideoDiffusionPipeline: the final latents after 5 Euler steps from the same noise and the same conditioning
(docs/sampling.md §5, docs/models.md §8.8). The pipeline's own conditioning (CLIP embedding, noise-augmented image
latents, added time ids) is recorded and handed to dcrt's sampler, so this checks the network in the loop, not the
preprocessing.

Needs the `[parity]` extra; tiny preset, seconds on a CPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dcrt.families.svd.checkpoint import load_svd_model
from dcrt.families.svd.sampler import EDMInputs, FrameGuidance, build_edm_schedule, sample_edm
from dcrt.presets import get_preset
from tests.families.svd.test_edm import SVD_XT_SCHEDULER
from tests.models.svd_diffusers import (
    diffusers_unet,
    diffusers_vae,
    follow_original_eps,
    save_diffusers_folder,
    transformers_clip,
)

STEPS = 5


def _recording(method, calls: list):
    def wrapper(*args, **kwargs):
        calls.append(out := method(*args, **kwargs))
        return out

    return wrapper


@pytest.fixture(scope="module")
def pipeline_pair(tmp_path_factory):
    """(dcrt's tiny model, diffusers' pipeline around the same weights, loaded through dcrt's loader)."""
    from diffusers import EulerDiscreteScheduler, StableVideoDiffusionPipeline
    from transformers import CLIPImageProcessor

    preset = get_preset("tiny-svd")
    unet, vae, clip = diffusers_unet(preset), diffusers_vae(preset), transformers_clip(preset)
    model = load_svd_model(save_diffusers_folder(tmp_path_factory.mktemp("svd"), unet, vae, clip))
    follow_original_eps(unet)  # docs/models.md §8.2: the original's GroupNorm eps, which dcrt uses
    pipe = StableVideoDiffusionPipeline(
        vae=vae,
        image_encoder=clip,
        unet=unet,
        scheduler=EulerDiscreteScheduler.from_config(SVD_XT_SCHEDULER),
        feature_extractor=CLIPImageProcessor(),  # OpenAI's CLIP mean and std, as released
    )
    return model, pipe


def random_picture(height: int, width: int, seed: int) -> Image.Image:
    g = torch.Generator().manual_seed(seed)
    return Image.fromarray(torch.randint(0, 256, (height, width, 3), generator=g, dtype=torch.uint8).numpy())


@pytest.mark.parametrize(("height", "width"), [(64, 64), (576, 1024)])
def test_image_embedding_matches_the_pipelines(pipeline_pair, height, width):
    # The CLIP input is made the same way (antialiased resize to 224 x 224, then CLIP's normalisation), when the
    # picture is enlarged (tiny) and when it is shrunk with a blur first (svd-xt's 576 x 1024).
    model, pipe = pipeline_pair
    picture = random_picture(height, width, seed=5)
    image = torch.from_numpy(np.array(picture)).permute(2, 0, 1)[None].float() / 127.5 - 1.0
    with torch.no_grad():
        expected = pipe._encode_image(picture, "cpu", 1, do_classifier_free_guidance=False)
        ours = model.encode_image(image)
    error = ((ours - expected).norm() / expected.norm()).item()
    print(f"image embedding from a {height}x{width} picture: relative error {error:.2e}")
    assert error < 1e-4


def test_five_euler_steps_match_the_diffusers_pipeline(pipeline_pair):
    model, pipe = pipeline_pair
    preset = model.preset
    embeds, latents = [], []
    pipe._encode_image = _recording(pipe._encode_image, embeds)
    pipe._encode_vae_image = _recording(pipe._encode_vae_image, latents)

    frames, h, w = preset.frames, preset.latent_height, preset.latent_width
    image = random_picture(preset.height, preset.width, seed=0)
    noise = torch.randn(1, 4, frames, h, w, generator=torch.Generator().manual_seed(0))
    s = preset.sampling
    with torch.no_grad():
        expected = pipe(
            image,
            height=preset.height,
            width=preset.width,
            num_frames=frames,
            num_inference_steps=STEPS,
            min_guidance_scale=s.min_guidance_scale,
            max_guidance_scale=s.max_guidance_scale,
            fps=s.fps,
            motion_bucket_id=s.motion_bucket_id,
            noise_aug_strength=s.noise_aug_strength,
            latents=noise.transpose(1, 2),
            generator=torch.Generator().manual_seed(1),
            output_type="latent",
        ).frames.transpose(1, 2)

        # The pipeline stacks the unconditional branch (zeros) first; dcrt.families.svd.sampler takes the conditional
        # one first.
        image_embeds, image_latents = embeds[0].flip(0), latents[0].flip(0)
        assert image_embeds[1].abs().max() == 0 and image_latents[1].abs().max() == 0
        concat = image_latents[:, :, None].expand(-1, -1, frames, -1, -1)
        time_ids = torch.tensor([[s.fps - 1, s.motion_bucket_id, s.noise_aug_strength]] * 2)
        schedule = build_edm_schedule(preset.edm, STEPS)
        guidance = FrameGuidance(s.min_guidance_scale, s.max_guidance_scale)
        ours = sample_edm(model.unet, EDMInputs(image_embeds, concat, time_ids), schedule, guidance, noise)

    error = ((ours - expected).norm() / expected.norm()).item()
    print(f"final latents after {STEPS} steps: relative error {error:.2e}")
    assert error < 1e-3
