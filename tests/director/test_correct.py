"""The correction loop with a scripted fake pipeline (a square whose speed follows the frame-rate conditioning),
its rule table and `--until`'s parsing; `dcrt animate --score` end to end on the tiny preset; `animate --until` and
`interpolate --score` through the command line with stand-ins for the model's frames (the tiny backend still opens)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from _videos import moving_square

from dcrt.director.correct import Attempt, CorrectionRequest, best, correct, format_tries, try_path
from dcrt.director.rules import RULES, Condition, Limits, RuleProposer, Settings, parse_until
from dcrt.director.score import METRICS, score_frames
from dcrt.errors import UsageError
from dcrt.presets import get_preset

START = Settings("a red box", guidance_scale=7.5, eta=1.0, frame_stride=24, seed=123)
FPS_MODEL = Limits(frame_stride_range=(1, 60), frame_stride_is_fps=True)


class FakePipeline:
    """A model conditioned on fps: the square moves 48 / fps px per frame (fps 24: 2 px); records each call."""

    def __init__(self):
        self.calls: list[Settings] = []

    def __call__(self, settings: Settings):
        self.calls.append(settings)
        return moving_square((round(48 / settings.frame_stride), 0), frames=6)


def run_loop(conditions, tries, propose=RuleProposer(FPS_MODEL), start=START):
    pipeline = FakePipeline()
    attempts = correct(pipeline, lambda frames, number: score_frames(frames), start, conditions, tries, propose)
    return pipeline, attempts


def test_the_loop_raises_motion_until_the_target_is_met():
    pipeline, attempts = run_loop(parse_until("motion>=6"), tries=6)
    # fps 24 -> 16 -> 10 -> 6 (x 2/3, rounded down): 2, 3, 5, 8 px per frame
    assert [a.settings.frame_stride for a in attempts] == [24, 16, 10, 6]
    assert [a.met for a in attempts] == [False, False, False, True]
    assert attempts[-1].scores.motion == pytest.approx(8, rel=0.1)
    assert best(attempts) is attempts[-1]
    assert pipeline.calls == [a.settings for a in attempts]  # no try beyond the first that met the target
    assert attempts[1].settings.prompt == "a red box, fast dynamic motion"
    assert attempts[3].settings.prompt == "a red box, fast dynamic motion"  # one phrase, not one per try


def test_the_loop_stops_at_n_tries_and_picks_the_closest():
    _, attempts = run_loop(parse_until("motion>=20"), tries=3)
    assert len(attempts) == 3 and not any(a.met for a in attempts)
    assert best(attempts).number == 3  # 5 px is the nearest to 20


def test_the_loop_is_deterministic():
    first = run_loop(parse_until("motion>=6,frozen_frames<=0"), tries=4)[1]
    again = run_loop(parse_until("motion>=6,frozen_frames<=0"), tries=4)[1]
    assert [(a.settings, a.scores) for a in first] == [(a.settings, a.scores) for a in again]


def test_too_much_motion_is_slowed_the_other_way():
    _, attempts = run_loop(parse_until("motion<=7"), tries=4, start=replace(START, frame_stride=4))  # 12 px per frame
    # fps 4 -> 6 -> 9 (x 1.5, rounded up): 12, 8, 5 px per frame
    assert [a.settings.frame_stride for a in attempts] == [4, 6, 9] and attempts[-1].met
    assert attempts[-1].settings.prompt == "a red box, slow gentle motion"


def test_a_repeated_proposal_gets_the_next_seed():
    stuck = lambda settings, scores, conditions: settings  # noqa: E731  (a proposer with no idea)
    pipeline, attempts = run_loop(parse_until("motion>=50"), tries=3, propose=stuck)
    assert [s.seed for s in pipeline.calls] == [123, 124, 125]


def test_a_try_with_black_frames_loses_to_one_without():
    scores = score_frames(moving_square((2, 0), frames=4))
    dark = replace(scores, black_frames=1)
    attempts = [Attempt(1, START, dark, 0.0), Attempt(2, START, scores, 0.5), Attempt(3, START, scores, 0.5)]
    assert best(attempts).number == 2
    table = format_tries(attempts, parse_until("motion>=3"))
    assert table.splitlines()[2].startswith("2 *")


def test_the_frame_stride_moves_by_what_it_means():
    """The 256 model's frame stride grows with motion; the fps of the others shrinks; both stay in range."""
    stride_model = Limits.of(get_preset("256"))
    assert stride_model.frame_stride_is_fps is False and Limits.of(get_preset("512")).frame_stride_is_fps
    more = RuleProposer(stride_model)(replace(START, frame_stride=3), score_frames(moving_square((0, 0), 3)), [])
    assert more.frame_stride == 3  # no condition unmet: nothing moves
    low = parse_until("motion>=5")
    still = score_frames(moving_square((0, 0), frames=3))
    assert RuleProposer(stride_model)(replace(START, frame_stride=3), still, low).frame_stride == 5  # ceil(4.5)
    assert RuleProposer(stride_model)(replace(START, frame_stride=29), still, low).frame_stride == 30  # its top
    assert RuleProposer(FPS_MODEL)(replace(START, frame_stride=1), still, low).frame_stride == 1  # its bottom


def test_the_first_condition_given_wins_a_tug_of_war():
    """Too little motion and too little consistency: more motion (the first condition), then consistency's guidance
    down; its less motion would undo the first move and is skipped. The other order slows the video instead."""
    still = score_frames(moving_square((0, 0), frames=3))
    scores = replace(still, consistency=0.5)
    propose = RuleProposer(FPS_MODEL)
    moved = propose(START, scores, parse_until("motion>=4,consistency>=0.9"))
    assert (moved.frame_stride, moved.guidance_scale, moved.prompt) == (16, 6.0, "a red box, fast dynamic motion")
    moved = propose(START, scores, parse_until("consistency>=0.9,motion>=4"))
    assert (moved.frame_stride, moved.guidance_scale, moved.prompt) == (36, 6.0, "a red box, slow gentle motion")


def test_every_metric_has_a_rule_row():
    assert set(RULES) == set(METRICS)


def test_parse_until():
    assert parse_until(" motion>=4, consistency >= 0.9,flicker<=2") == (
        Condition("motion", 4.0, True),
        Condition("consistency", 0.9, True),
        Condition("flicker", 2.0, False),
    )
    assert str(Condition("motion", 4.0, True)) == "motion>=4"


@pytest.mark.parametrize(
    ("until", "message"),
    [
        ("motion>4", "'motion>4' is not METRIC>=NUMBER or METRIC<=NUMBER"),
        ("speed>=3", "unknown metric 'speed'; choose from motion, "),
        ("motion>=fast", "'fast' in 'motion>=fast' is not a number"),
        ("motion>=nan", "the bound of 'motion>=nan' must be a finite number"),
        ("flicker>=2", "no rule raises flicker; bound it the other way, flicker<=NUMBER"),
        ("motion>=4,", "'' is not METRIC>=NUMBER"),
    ],
)
def test_bad_until_is_one_line_before_any_model(run_cli, tmp_path, until, message):
    image = tmp_path / "box.png"
    from PIL import Image

    Image.fromarray(moving_square((0, 0), frames=1)[0]).save(image)
    code, out, err = run_cli(
        ["animate", str(image), "x", "--res", "tiny", "--until", until, "-o", str(tmp_path / "o.mp4")]
    )
    assert (code, out) == (2, "")
    assert err.startswith(f"dcrt: error: --until: {message}") and err.count("\n") == 1


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (CorrectionRequest(tries=2), "--tries is the number of tries of --until: give --until too"),
        (CorrectionRequest("motion>=3", tries=0), "--tries must be at least 1, got 0"),
    ],
)
def test_tries_without_until_or_below_one(request_, message):
    with pytest.raises(UsageError, match=message):
        request_.conditions()


def test_until_needs_a_dynamicrafter_preset_one_clip_and_clip_for_a_clip_metric(tmp_path):
    target = [tmp_path / "o.mp4"]
    with pytest.raises(UsageError, match="tiny-svd does not support --until"):
        CorrectionRequest("motion>=3").checked(get_preset("tiny-svd"), None, False, target, "mp4")
    with pytest.raises(UsageError, match="does not combine with --extend"):
        CorrectionRequest("motion>=3").checked(get_preset("tiny"), None, True, target, "mp4")
    with pytest.raises(UsageError, match="--until consistency>=0.9 needs the checkpoint's CLIP"):
        CorrectionRequest("motion>=3,consistency>=0.9").checked(get_preset("512"), None, False, target, "mp4")
    assert CorrectionRequest("motion>=3").checked(get_preset("512"), None, False, target, "mp4")  # pixels only


def test_tries_are_named_beside_the_output(tmp_path):
    assert try_path(tmp_path / "boat_animate.mp4", 2) == tmp_path / "boat_animate.try2.mp4"
    assert try_path(tmp_path / "frames", 1) == tmp_path / "frames.try1"


@pytest.fixture
def box_png(tmp_path):
    from PIL import Image

    path = tmp_path / "box.png"
    Image.fromarray(moving_square((0, 0), frames=1)[0]).save(path)
    return path


def test_animate_score_end_to_end(run_cli, box_png, tmp_path):
    out = tmp_path / "box_animate.mp4"
    code, stdout, err = run_cli(
        [
            "animate",
            str(box_png),
            "a box",
            "--res",
            "tiny",
            "--random-weights",
            "--steps",
            "1",
            "--score",
            "-o",
            str(out),
        ]
    )
    assert code == 0, err
    assert stdout == f"{out}\n" and f"scores: {out}.scores.json" in err
    scores = json.loads((tmp_path / "box_animate.mp4.scores.json").read_text())
    assert scores["frames"] == 16 and scores["missing"] == {}  # tiny's random CLIP gives every metric
    assert all(scores[name] is not None for name in METRICS)


def test_animate_until_keeps_each_try_and_writes_the_best(run_cli, box_png, tmp_path, monkeypatch):
    """The command line's loop with the fake pipeline in place of dcrt.api.animate (the tiny backend still opens):
    fps 24 -> 16 -> 10 gives 2, 3, 5 px per frame at 128 px, 4, 6, 10 px at the analysis size."""
    from types import SimpleNamespace

    seen = []

    def fake_animate(backend, image, prompt, *, on_step=None, **sampling):
        seen.append((prompt, sampling))
        step = round(48 / sampling["frame_stride"])
        return SimpleNamespace(frames=moving_square((step, 0), frames=6, size=(128, 128)))

    monkeypatch.setattr("dcrt.api.animate", fake_animate)
    out = tmp_path / "box_animate.mp4"
    args = ["animate", str(box_png), "a box", "--res", "tiny", "--steps", "1", "-o", str(out), "--tries", "5"]
    code, stdout, err = run_cli([*args, "--until", "motion>=8,consistency>=-1", "--frame-stride", "24"])
    assert code == 0, err
    assert stdout == f"{out}\n"
    assert [s["frame_stride"] for _, s in seen] == [24, 16, 10] and all(s["steps"] == 1 for _, s in seen)
    assert seen[1][0] == "a box, fast dynamic motion"
    table = [line.split() for line in err.splitlines() if line.startswith(("try ", "1", "2", "3"))]
    assert table[0][:4] == ["try", "motion", "consistency", "met"]
    assert [row[:2] for row in table[1:]] == [["1"], ["2"]] or [row[0] for row in table[1:]] == ["1", "2", "3"]
    assert table[3][1] == "*" and table[3][4] == "yes"  # the third try met both conditions: the best
    tries = [tmp_path / f"box_animate.try{n}.mp4" for n in (1, 2, 3)]
    assert all(t.is_file() and (t.parent / (t.name + ".scores.json")).is_file() for t in tries)
    assert not (tmp_path / "box_animate.try4.mp4").exists()
    assert out.read_bytes() == tries[2].read_bytes()
    chosen = json.loads((tmp_path / "box_animate.mp4.scores.json").read_text())
    assert chosen["motion"] == pytest.approx(10, rel=0.1) and chosen["consistency"] is not None


def test_limits_bring_any_proposal_into_range():
    wild = Settings("x", guidance_scale=99.0, eta=-2.0, frame_stride=500, seed=2**64 + 5)
    assert FPS_MODEL.clamp(wild) == Settings("x", guidance_scale=15.0, eta=0.0, frame_stride=60, seed=5)
    assert FPS_MODEL.clamp(START) == START


def test_interpolate_score_compares_each_key_frame_with_its_place(run_cli, tmp_path, monkeypatch):
    """`--score` on interpolate, with a stand-in for dcrt.api.save_video that writes a cross-fade from FIRST to LAST
    (the tiny backend still opens): both key frames sit where they should, so the PSNR is high (H.264's loss only);
    compared with the middle frame instead, each would be ~23 dB off."""
    import numpy as np
    from _videos import smooth_scene
    from PIL import Image

    from dcrt.video import write_video

    def scene(seed: int) -> np.ndarray:  # contrast x4: the middle frame of the fade is ~23 dB from either end
        return np.clip((smooth_scene((64, 64), seed=seed).astype(np.float32) - 125) * 4 + 128, 0, 255).astype(np.uint8)

    first, last = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(scene(1)).save(first)
    Image.fromarray(scene(2)).save(last)

    def cross_fade(backend, mode, images, prompt, path, *, fps=None, quality=10, format=None, **rest):
        a, b = (np.asarray(image, np.float32) for image in images)
        frames = np.stack([a + (b - a) * t / 15 for t in range(16)]).round().astype(np.uint8)
        return write_video(frames, path, format, fps=fps, quality=quality)

    monkeypatch.setattr("dcrt.api.save_video", cross_fade)
    out = tmp_path / "ab.mp4"
    code, _, err = run_cli(["interpolate", str(first), str(last), "a fade", "--res", "tiny", "--score", "-o", str(out)])
    assert code == 0, err
    scores = json.loads((tmp_path / "ab.mp4.scores.json").read_text())
    assert scores["frames"] == 16 and scores["image_psnr"] > 30 and scores["missing"] == {}
