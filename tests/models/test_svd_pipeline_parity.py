"""`dcrt.animate` of an SVD model end to end against diffusers' StableVideoDiffusionPipeline (docs/models.md §8.8):
the same weights (diffusers' tiny models, loaded into dcrt through its own loader), the same picture, the same
seed. Nothing is handed across: each side preprocesses, augments, encodes, samples and decodes by itself, so
the seeded draw order (augmentation noise, then x_T frame-major; dcrt.families.svd.pipeline) is checked as well.

Needs the `[parity]` extra; tiny preset, seconds on a CPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dcrt
from tests.models.test_svd_sampling_parity import STEPS, pipeline_pair, random_picture  # noqa: F401  (fixture)

SEED = 7


def _recorded_latents(pipe) -> list:
    """Wrap the pipeline's decoder entry to keep the final latents it is given ([1, T, 4, h, w])."""
    seen = []
    decode = pipe.decode_latents

    def wrapper(latents, *args, **kwargs):
        seen.append(latents.clone())
        return decode(latents, *args, **kwargs)

    pipe.decode_latents = wrapper
    return seen


@pytest.mark.parametrize("motion_bucket_id, fps", [(127, 7), (30, 12)])
def test_animate_matches_the_diffusers_pipeline(pipeline_pair, motion_bucket_id, fps):  # noqa: F811
    model, pipe = pipeline_pair
    preset, s = model.preset, model.preset.sampling
    picture = random_picture(preset.height, preset.width, seed=3)
    seen = _recorded_latents(pipe)
    with torch.no_grad():
        expected = pipe(
            picture,
            height=preset.height,
            width=preset.width,
            num_frames=preset.frames,
            num_inference_steps=STEPS,
            min_guidance_scale=s.min_guidance_scale,
            max_guidance_scale=s.max_guidance_scale,
            fps=fps,
            motion_bucket_id=motion_bucket_id,
            noise_aug_strength=s.noise_aug_strength,
            decode_chunk_size=s.decode_chunk,
            generator=torch.Generator().manual_seed(SEED),
            output_type="np",
        ).frames[0]  # float [T, H, W, 3] in [0, 1]
    video = dcrt.animate(model, picture, steps=STEPS, seed=SEED, fps=fps, motion_bucket_id=motion_bucket_id)

    ref = seen[-1].transpose(1, 2)
    latent_error = ((video.latents - ref).norm() / ref.norm()).item()
    # The reference's frames converted to uint8 as dcrt converts its own (truncation, as the original does).
    levels = np.abs(video.frames.astype(np.int16) - (expected * 255.0).astype(np.uint8).astype(np.int16))
    print(
        f"motion {motion_bucket_id}, fps {fps}: latents {latent_error:.2e}, frames: max {levels.max()} level(s), "
        f"{(levels > 0).mean():.2%} of values differ"
    )
    assert latent_error < 1e-3
    assert levels.max() <= 1
    assert video.frames.shape == (preset.frames, preset.height, preset.width, 3) and video.fps == fps


def test_the_command_line_reads_a_diffusers_folder(tmp_path, run_cli):
    # --ckpt <the release's diffusers folder>: the same frames as the Python API on the model loaded from it.
    from PIL import Image

    from dcrt.presets import get_preset
    from tests.models.svd_diffusers import diffusers_unet, diffusers_vae, save_diffusers_folder, transformers_clip

    preset = get_preset("tiny-svd")
    folder = save_diffusers_folder(
        tmp_path / "release", diffusers_unet(preset), diffusers_vae(preset), transformers_clip(preset)
    )
    picture = random_picture(64, 64, seed=4)
    picture.save(tmp_path / "in.png")
    out = tmp_path / "frames"
    code, _, err = run_cli(
        [
            "animate",
            str(tmp_path / "in.png"),
            "--res",
            "tiny-svd",
            "--ckpt",
            str(folder),
            "--steps",
            "2",
            "-o",
            str(out),
            "--format",
            "png",
        ]
    )
    assert code == 0, err
    assert f"weights {folder}" in err
    frames = np.stack([np.array(Image.open(p)) for p in sorted(out.glob("*.png"))])
    expected = dcrt.animate(dcrt.load_svd_model(folder), picture, steps=2).frames
    assert np.array_equal(frames, expected)
