"""Storyboards written by a chat model from a goal, and sound tracks picked by one, against the loopback
OpenAI-compatible fake of test_llm: what is asked, what is written, and every unusable answer one line (exit 2)
with nothing written."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from dcrt.director.llm import LLMError, LLMRequest
from dcrt.director.sound import library_tracks, pick_by_llm
from dcrt.director.story_goal import STORY_PROMPT
from dcrt.director.storyboard import read_storyboard

SCENES = {"scenes": [{"prompt": "boats rocking on the waves"}, "a storm rolling in over the sea", {"prompt": "rain"}]}


@pytest.fixture
def first(tmp_path):
    path = tmp_path / "first.png"
    Image.fromarray((np.random.default_rng(3).random((50, 70, 3)) * 255).astype(np.uint8)).save(path)
    return path


def _goal(chat, board, first, *more):
    llm = ["--llm", chat.url, "--llm-model", "fake-vision"]
    return [
        "story",
        str(board),
        "--goal",
        "a harbour before a storm",
        "--image",
        str(first),
        *llm,
        "--res",
        "tiny",
        *more,
    ]


def test_the_chat_model_writes_an_editable_storyboard(chat, first, tmp_path, run_cli, no_model_loads):
    chat.reply = (200, json.dumps(SCENES), 0.0, None)
    board = tmp_path / "story.toml"
    code, out, err = run_cli(_goal(chat, board, first, "--steps", "2"))
    assert code == 0, err
    assert out.strip() == str(board)  # without -o: written, not rendered
    story = read_storyboard(board)
    assert [s.prompt for s in story.scenes] == ["boats rocking on the waves", "a storm rolling in over the sea", "rain"]
    assert [s.image for s in story.scenes] == [first, None, None]
    assert [s.transition for s in story.scenes] == ["continue", "continue", "cut"]
    assert {(s.preset, s.steps) for s in story.scenes} == {("tiny", 2)}
    (request,) = chat.requests
    messages = request["body"]["messages"]
    assert messages[0] == {"role": "system", "content": STORY_PROMPT}
    assert "a harbour before a storm" in messages[1]["content"][0]["text"]
    assert messages[1]["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("Sure! Here is a story.", "not the JSON asked for"),
        (json.dumps({"acts": []}), "has no list of scenes"),
        (json.dumps({"scenes": []}), "has no list of scenes"),
        (json.dumps({"scenes": ["waves"] * 9}), "planned 9 scenes, more than 8"),
        (json.dumps({"scenes": [{"prompt": ""}]}), "empty or non-text prompt"),
        (json.dumps({"scenes": ["Sorry, I cannot help with that"]}), "refused"),
        (json.dumps({"scenes": [" ".join(["word"] * 41)]}), "over 40 words"),
    ],
)
def test_an_unusable_storyboard_answer_is_one_line_and_nothing_written(
    chat,
    first,
    tmp_path,
    run_cli,
    no_model_loads,
    answer,
    expected,
):
    chat.reply = (200, answer, 0.0, None)
    board = tmp_path / "story.toml"
    code, out, err = run_cli(_goal(chat, board, first, "-o", str(tmp_path / "film.mp4")))
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and expected in err, err
    assert out == "" and not board.exists() and not (tmp_path / "film.mp4").exists()


def test_goal_refusals_before_anything_is_sent(chat, first, tmp_path, run_cli, no_model_loads):
    board = tmp_path / "story.toml"
    board.write_text("# edited by hand\n")
    cases = [
        (_goal(chat, board, first), "exists: name a new file"),
        (_goal(chat, tmp_path / "new.toml", tmp_path / "none.png"), "--image"),
        (_goal(chat, tmp_path / "new.toml", first, "-o", str(tmp_path / "f.gif"), "--audio", str(first)), "mp4"),
    ]
    for args, expected in cases:
        code, _, err = run_cli(args)
        assert code == 2 and expected in err and len(err.strip().splitlines()) == 1, (args, err)
    assert chat.requests == [] and board.read_text() == "# edited by hand\n"


def test_the_chat_model_picks_a_library_track_by_name(chat, tmp_path):
    for name in ("calm_sea.wav", "storm.mp3"):
        (tmp_path / name).write_bytes(b"")
    tracks = library_tracks(tmp_path)
    request = LLMRequest(chat.url, "fake", None)
    chat.reply = (200, json.dumps({"track": "storm.mp3"}), 0.0, None)
    assert pick_by_llm(tracks, "thunder over the sea", request).name == "storm.mp3"
    asked = json.loads(chat.requests[0]["body"]["messages"][1]["content"])
    assert asked == {
        "prompt": "thunder over the sea",
        "tracks": [{"name": "calm_sea.wav", "tags": "calm sea"}, {"name": "storm.mp3", "tags": "storm"}],
    }
    chat.reply = (200, json.dumps({"track": "drums.wav"}), 0.0, None)
    with pytest.raises(LLMError, match="names no track of the library"):
        pick_by_llm(tracks, "thunder", request)


def test_animate_with_llm_lays_the_track_the_chat_model_picks(chat, first, tmp_path, run_cli, monkeypatch):
    """--llm with --audio-library on a generating command: the chat model's pick is muxed (stand-in backend and
    writer: no sampling, and no CLIP is loaded)."""
    from _audio import audio_samples, sine_wav
    from _videos import moving_square

    from dcrt.video import write_video

    library = tmp_path / "tracks"
    library.mkdir()
    sine_wav(library / "calm_sea.wav", 1.0, 440.0)
    sine_wav(library / "storm_drums.wav", 1.0, 1000.0)

    def refuse(*args, **kwargs):
        raise AssertionError("CLIP was loaded")

    def save_video(backend, mode, images, prompt, path, *, fps, **kwargs):
        return write_video(moving_square((4, 0), frames=16, size=(128, 160)), path, fps=fps)

    monkeypatch.setattr("dcrt.director.describe.open_embedder", refuse)
    monkeypatch.setattr("dcrt.loading.open_backend", lambda *args, **kwargs: object())
    monkeypatch.setattr("dcrt.api.save_video", save_video)
    chat.reply = (200, json.dumps({"track": "storm_drums.wav"}), 0.0, None)
    target = tmp_path / "out.mp4"
    llm = ["--llm", chat.url, "--llm-model", "m", "--audio-library", str(library)]
    code, _, err = run_cli(["animate", str(first), "thunder", "--res", "tiny", *llm, "-o", str(target)])
    assert code == 0, err
    assert "sound track for 'thunder': storm_drums.wav" in err
    spectrum = np.abs(np.fft.rfft(audio_samples(target)[:8000]))  # 1 Hz per bin
    assert abs(int(np.argmax(spectrum)) - 1000) <= 2
