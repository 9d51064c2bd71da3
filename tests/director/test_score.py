"""The CLIP metrics and the score report with fake embedders of known embeddings (the real OpenCLIP is
dcrt.director.clip_space's, tested there): each cosine is planted, so each metric has an exact answer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dcrt.director.score import CLIPSCORE_WEIGHT, METRICS, Scores, format_table, keyframe_positions, score_frames


class PlantedEmbedder:
    """Embeds frame t as the unit vector at angle angles[t] in a plane (so cos(t, s) = cos(angle_t - angle_s)); an
    image whose pixels all equal v as angle image_angles[v]; text as the unit vector at text_angle."""

    def __init__(self, angles, image_angles=None, text_angle=0.0):
        self.angles, self.image_angles, self.text_angle = list(angles), image_angles or {}, text_angle
        self.texts: list[list[str]] = []

    @staticmethod
    def unit(angle: float) -> np.ndarray:
        return np.array([np.cos(angle), np.sin(angle), 0.0], np.float32)

    def embed_images(self, frames: np.ndarray) -> np.ndarray:
        if len(frames) == len(self.angles) and frames[0].std() > 0:  # the video (its frames have texture)
            return np.stack([self.unit(a) for a in self.angles])
        return np.stack([self.unit(self.image_angles[int(f[0, 0, 0])]) for f in frames])

    def embed_texts(self, prompts: list[str]) -> np.ndarray:
        self.texts.append(prompts)
        return np.stack([self.unit(self.text_angle) for _ in prompts])


def textured_video(frames: int = 5) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (frames, 32, 48, 3), dtype=np.uint8)


def test_consistency_is_the_mean_cosine_of_consecutive_frames_and_to_the_first():
    angles = [0.0, 0.1, 0.3, 0.6, 1.0]
    scores = score_frames(textured_video(), embedder=PlantedEmbedder(angles))
    assert scores.consistency == pytest.approx(np.mean(np.cos(np.diff(angles))))
    assert scores.consistency_first == pytest.approx(np.mean(np.cos(angles[1:])))


def test_image_similarity_compares_each_image_with_the_frame_at_its_place():
    angles = [0.0, 0.2, 0.4, 0.6, 0.8]
    first, last = np.full((32, 48, 3), 1, np.uint8), np.full((32, 48, 3), 2, np.uint8)
    embedder = PlantedEmbedder(angles, image_angles={1: 0.5, 2: 0.8})
    scores = score_frames(textured_video(), images=[first, last], embedder=embedder)
    # frame 0 (angle 0) with the first image (0.5), frame 4 (0.8) with the last (0.8)
    assert scores.image_similarity == pytest.approx((np.cos(0.5) + 1.0) / 2)
    one = score_frames(textured_video(), images=[last], embedder=embedder)
    assert one.image_similarity == pytest.approx(np.cos(0.8))


def test_image_psnr_compares_pixels_at_the_images_places():
    video = textured_video()
    scores = score_frames(video, images=[video[0], video[-1]])
    assert scores.image_psnr == 100.0  # identical images: the cap
    assert score_frames(video, images=[video[1]]).image_psnr < 20  # another frame of noise


def test_prompt_score_is_clipscore():
    """CLIPScore: 2.5 x max(cos, 0) per frame, averaged; a frame facing away from the text counts 0, not less."""
    angles = [0.0, 0.5, 1.0, 2.0, 3.0]  # cos(3 - 0.2) < 0
    embedder = PlantedEmbedder(angles, text_angle=0.2)
    scores = score_frames(textured_video(), prompt="a boat sailing", embedder=embedder)
    expected = np.mean([CLIPSCORE_WEIGHT * max(np.cos(a - 0.2), 0.0) for a in angles])
    assert scores.prompt_score == pytest.approx(expected)
    assert embedder.texts == [["a boat sailing"]]


def test_without_an_embedder_the_clip_metrics_say_why():
    scores = score_frames(textured_video(), prompt="waves", no_embedder="no checkpoint here")
    assert all(getattr(scores, name) is None for name in ("consistency", "image_similarity", "prompt_score"))
    assert scores.missing["consistency"] == "no checkpoint here"
    assert scores.missing["image_similarity"] == "needs the conditioning image (--image)"
    assert scores.motion >= 0 and scores.black_frames == 0  # the pixel metrics are all there
    table = format_table(scores)
    assert "consistency" in table and "missing: no checkpoint here" in table


def test_the_json_holds_every_field_and_reads_back():
    scores = score_frames(textured_video(), prompt="x", embedder=PlantedEmbedder([0.0, 0.1, 0.2, 0.3, 0.4]))
    assert Scores(**json.loads(scores.to_json())) == scores


def test_every_metric_has_a_table_row_and_a_definition_in_the_docs():
    from dataclasses import fields
    from pathlib import Path

    described = {f.name for f in fields(Scores)} - {"frames", "height", "width", "missing", "version"}
    assert set(METRICS) == described
    docs = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()
    assert [name for name in METRICS if f"`{name}`" not in docs] == []


@pytest.mark.parametrize(("images", "frames", "expected"), [(1, 16, [0]), (2, 16, [0, 15]), (3, 31, [0, 15, 30])])
def test_keyframes_sit_evenly_from_the_first_frame_to_the_last(images, frames, expected):
    assert keyframe_positions(images, frames) == expected


def test_a_family_without_a_text_tower_or_a_checkpoint_is_a_reason_not_an_error():
    from dcrt.director.score import open_embedder
    from dcrt.presets import get_preset
    from dcrt.weights import Weights

    embedder, why = open_embedder(get_preset("tiny-svd"), Weights("tiny-svd"))
    assert embedder is None and why.startswith("tiny-svd does not support the CLIP metrics")
    embedder, why = open_embedder(get_preset("512"), None)
    assert embedder is None and why == "no checkpoint of preset 512 here: give --ckpt PATH (or --random-weights)"


def test_a_wrong_shape_is_one_line():
    from dcrt.errors import UsageError

    with pytest.raises(UsageError, match=r"must be \[T, H, W, 3\] with T >= 1, got \[5, 32, 48\]"):
        score_frames(textured_video()[..., 0])
    with pytest.raises(UsageError, match=r"at the frames' size \[32, 48, 3\] \(fit_image\), got \[16, 16, 3\]"):
        score_frames(textured_video(), images=[np.zeros((16, 16, 3), np.uint8)])
