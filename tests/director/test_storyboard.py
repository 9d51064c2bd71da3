"""Storyboards read and checked whole before any model loads: transitions given and implied, and every bad
storyboard one line naming the scene and the field (exit 2)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dcrt.director.storyboard import parse_storyboard, read_storyboard, storyboard_toml


@pytest.fixture
def images(tmp_path):
    for i, name in enumerate(("a", "b")):
        Image.fromarray(np.full((40, 50, 3), 60 * i, np.uint8)).save(tmp_path / f"{name}.png")
    return tmp_path


HEAD = '[story]\npreset = "tiny"\nbridge_preset = "tiny-tooncrafter"\nsteps = 1\n'


def test_transitions_are_given_or_implied_by_the_next_image(images):
    path = images / "story.toml"
    path.write_text(
        HEAD
        + '[[scene]]\nimage = "a.png"\nprompt = "waves"\ntransition = "bridge"\n'
        + '[[scene]]\nimage = "b.png"\nseed = 7\n'
        + '[[scene]]\nprompt = "  clouds   drifting "\nframes = 24\n'
        + '[[scene]]\nimage = "a.png"\n'
    )
    board = read_storyboard(path)
    assert [s.transition for s in board.scenes] == ["bridge", "continue", "cut", "cut"]
    assert [s.image for s in board.scenes] == [images / "a.png", images / "b.png", None, images / "a.png"]
    assert [s.prompt for s in board.scenes] == ["waves", None, "clouds drifting", None]
    assert [(s.preset, s.steps, s.frames, s.seed) for s in board.scenes][1:3] == [
        ("tiny", 1, None, 7),
        ("tiny", 1, 24, None),
    ]
    assert (board.bridge_preset, board.fps) == ("tiny-tooncrafter", 8)
    # Written back as TOML, it reads as the same storyboard.
    again = images / "again.toml"
    again.write_text(storyboard_toml(board, images))
    assert read_storyboard(again) == board


SCENE = '[[scene]]\nimage = "a.png"\nprompt = "x"\n'


@pytest.mark.parametrize(
    "text, expected",
    [
        (HEAD + SCENE + "[[scene]]\ncolour = 'red'\n", "scene 2: unknown key 'colour'; choose from image, prompt"),
        (HEAD + "speed = 2\n" + SCENE, "[story]: unknown key 'speed'"),
        (HEAD + '[[scene]]\nprompt = "x"\n', "scene 1: image: the first scene has nothing to start from"),
        (HEAD + '[[scene]]\nimage = "missing.png"\n', "scene 1: image: "),
        (HEAD + SCENE + "[[scene]]\nframes = 300\n", "scene 2: frames: frames must be at most 256"),
        (HEAD + SCENE + "[[scene]]\nframes = 'many'\n", "scene 2: frames must be a whole number"),
        (HEAD + SCENE + "[[scene]]\npreset = '77'\n", "scene 2: preset: unknown preset '77'"),
        (
            HEAD + SCENE + "[[scene]]\npreset = 'tiny-tooncrafter'\n",
            "scene 2: preset: preset tiny-tooncrafter cannot animate",
        ),
        (HEAD + SCENE + "[[scene]]\npreset = '512'\n", "scene 2: preset: 512 renders 320x512, scene 1 64x64"),
        (HEAD + SCENE + "[[scene]]\nseed = -1\n", "scene 2: seed: "),
        (HEAD + SCENE + "[[scene]]\npreset = 'tiny-svd'\n", "scene 2: preset: tiny-svd does not support stories"),
        (HEAD + SCENE + "transition = 'fade'\n" + SCENE, "scene 1: transition must be one of cut, continue, bridge"),
        (HEAD + SCENE + "transition = 'bridge'\n", "scene 1: transition 'bridge' needs a next scene"),
        (HEAD + SCENE + "transition = 'continue'\n" + SCENE, "scene 2: image: scene 1 continues into it"),
        (
            HEAD + SCENE + "transition = 'cut'\n[[scene]]\n",
            "scene 2: image: it continues from scene 1, whose transition",
        ),
        (
            HEAD.replace("tiny-tooncrafter", "256") + SCENE + "transition = 'bridge'\n" + SCENE,
            "[story] bridge_preset: preset 256 cannot interpolate",
        ),
        (HEAD + "[[scene]]\n[scene]", "is not TOML"),
        (HEAD, "1 to 64 [[scene]] tables, got 0"),
    ],
)
def test_a_bad_storyboard_is_one_line_naming_scene_and_field(images, run_cli, no_model_loads, text, expected):
    path = images / "story.toml"
    path.write_text(text)
    code, out, err = run_cli(["story", str(path), "-o", str(images / "film.mp4")])
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and expected in err, err
    assert out == "" and not (images / "film.mp4").exists()


def test_bad_film_options_are_one_line_before_any_model(images, run_cli, no_model_loads, tmp_path):
    path = images / "story.toml"
    path.write_text(HEAD + SCENE)
    cases = [
        ([], "story needs -o FILM"),
        (["-o", str(tmp_path / "film.gif"), "--audio", str(tmp_path / "a.wav")], "--audio needs an mp4 output"),
        (["-o", str(tmp_path / "film.mp4"), "--audio", str(tmp_path / "a.wav")], "does not exist"),
        (["-o", str(tmp_path / "no" / "film.mp4")], "does not exist"),
        (["-o", str(tmp_path / "film.mp4"), "--goal", "a storm"], "--goal needs --llm URL"),
        (
            ["-o", str(tmp_path / "film.mp4"), "--image", str(images / "a.png")],
            "--image is the first image of a --goal",
        ),
    ]
    for args, expected in cases:
        code, out, err = run_cli(["story", str(path), *args])
        assert code == 2 and expected in err and len(err.strip().splitlines()) == 1, (args, err)


def test_parse_takes_tables_as_tomllib_gives_them(images):
    board = parse_storyboard({"scene": [{"image": "a.png", "prompt": "x"}]}, images)
    assert board.scenes[0].preset == "512" and board.bridge_preset == "512-interp"
