"""The pixel metrics on synthetic videos whose answers are known: a textured square moving k px per frame, a static
video, a flickering one, black, frozen and NaN frames."""

from __future__ import annotations

import numpy as np
import pytest
from _videos import moving_square, smooth_scene

from dcrt.director import metrics
from dcrt.director.score import score_frames


def pixel_motion(video: np.ndarray) -> metrics.Motion:
    return metrics.motion(metrics.optical_flow(metrics.analysis_luma(video)))


@pytest.mark.parametrize("step", [(1, 0), (3, 0), (0, 5), (4, 3), (8, 6)])
def test_a_moving_square_moves_its_planted_pixels_per_frame(step):
    planted = float(np.hypot(*step))  # at the analysis size: the frames' shorter side is already 256
    assert pixel_motion(moving_square(step)).motion == pytest.approx(planted, rel=0.1)


def test_motion_is_in_pixels_at_shorter_side_256_whatever_the_size():
    """3 px per frame in a 128-px-high video is 6 px per frame at the analysis size."""
    measured = pixel_motion(moving_square((3, 0), size=(128, 200)))
    assert measured.motion == pytest.approx(6.0, rel=0.1)
    assert measured.relative == pytest.approx(measured.motion / 256)


def test_dynamic_degree_counts_the_pairs_above_vbenchs_threshold():
    assert pixel_motion(moving_square((2, 0))).dynamic_degree == 0.0  # 2 px < 6 px
    assert pixel_motion(moving_square((8, 0))).dynamic_degree == 1.0
    half = np.concatenate([moving_square((8, 0), frames=5), np.repeat(moving_square((8, 0), frames=5)[-1:], 4, 0)])
    assert pixel_motion(half).dynamic_degree == pytest.approx(0.5)  # 4 moving pairs, then 4 still ones


def test_a_static_video_has_no_motion_no_flicker_and_every_later_frame_frozen():
    video = np.repeat(smooth_scene()[None], 6, axis=0)
    scores = score_frames(video)
    assert scores.motion < 0.05 and scores.dynamic_degree == 0.0
    assert scores.flicker < 0.05
    assert scores.frozen_frames == 5 and scores.black_frames == 0 and scores.nan_frames == 0


@pytest.mark.parametrize("amplitude", [4, 15])
def test_flicker_is_the_brightness_change_between_frames(amplitude):
    """The scene alternates amplitude above and below itself: every step changes brightness by 2 x amplitude."""
    offsets = np.array([amplitude if t % 2 else -amplitude for t in range(8)])[:, None, None, None]
    video = (smooth_scene()[None].astype(np.int16) + offsets).astype(np.uint8)
    scores = score_frames(video)
    assert scores.flicker == pytest.approx(2 * amplitude, rel=0.05)
    assert scores.frozen_frames == 0


def test_motion_alone_is_not_flicker():
    scores = score_frames(moving_square((5, 2)))
    assert scores.motion > 4 and scores.flicker < 0.5


def test_black_frames_are_counted_and_a_dark_scene_is_not_one():
    video = moving_square((2, 0))
    video[3] = 0
    video[5] = 8  # below video black (16)
    assert score_frames(video).black_frames == 2
    assert metrics.black_frames((smooth_scene()[None] // 4).astype(np.uint8)) == 0  # dark, with structure


def test_nan_frames_are_counted_and_the_rest_still_scored():
    video = moving_square((4, 0)).astype(np.float32) / 255.0
    video[2, 10:20] = np.nan
    video[6, :, :100] = np.inf
    scores = score_frames(video)
    assert scores.nan_frames == 2
    assert np.isfinite([scores.motion, scores.flicker]).all()
    assert scores.black_frames == 0


def test_one_frame_has_no_motion_and_no_frame_pairs():
    scores = score_frames(smooth_scene()[None])
    assert (scores.motion, scores.flicker, scores.frozen_frames) == (0.0, 0.0, 0)
    assert scores.missing["consistency"] == "needs at least two frames"


def test_psnr_of_a_known_difference():
    image = smooth_scene()
    assert metrics.psnr(image, image) == metrics.PSNR_CAP
    shifted = image.astype(np.int16) + 5  # mse 25: 10 log10(255^2 / 25) = 34.15 dB
    assert metrics.psnr(shifted.astype(np.uint8), image) == pytest.approx(10 * np.log10(255**2 / 25))
