"""Stories rendered on the tiny presets (random weights, one step): every transition kind joins the expected frames,
a sound track gives one AAC stream, and a story stopped in a scene resumes rendering only what is missing or
changed."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _audio import audio_samples, audio_seconds, sine_wav, streams
from PIL import Image

import dcrt
import dcrt.api
from dcrt.director.story import Sound, scenes_folder
from dcrt.loading import BackendRequest
from dcrt.video import read_video

HEAD = '[story]\npreset = "tiny"\nbridge_preset = "tiny-tooncrafter"\nsteps = 1\n'
# A bridge into scene 2, scene 3 continuing from scene 2's last frame (auto prompt), a cut to scene 4.
FOUR_SCENES = (
    HEAD
    + '[[scene]]\nimage = "a.png"\nprompt = "waves"\ntransition = "bridge"\n'
    + '[[scene]]\nimage = "b.png"\nprompt = "clouds"\nseed = 5\ntransition = "continue"\n'
    + '[[scene]]\nprompt = "auto"\n'
    + '[[scene]]\nimage = "c.png"\nprompt = "fire"\n'
)


def _pictures(folder):
    for i, name in enumerate(("a", "b", "c")):
        pixels = (np.random.default_rng(i).random((48, 80, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{name}.png")


@pytest.fixture(scope="module")
def four_scenes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("story")
    _pictures(folder)
    (folder / "story.toml").write_text(FOUR_SCENES)
    track = sine_wav(folder / "sine.wav", 1.5)
    model = BackendRequest(random_weights=True)
    film, prompts = dcrt.story(folder / "story.toml", folder / "film.mp4", model, sound=Sound(audio=track))
    return film, prompts


def _blocks(frames):
    """uint8 [T, 64, 64, 3] -> the means of its 8x8 blocks, float [T, 8, 8, 3]."""
    return frames.reshape(len(frames), 8, 8, 8, 8, 3).astype(float).mean(axis=(2, 4))


def _part(film, name):
    return read_video(scenes_folder(film) / name)


def test_each_transition_joins_the_expected_frames(four_scenes):
    film, prompts = four_scenes
    video = read_video(film)
    # 16 + the bridge's 14 inner frames + 16 + 15 (scene 3 without scene 2's last frame again) + 16.
    assert video.shape == (16 + 14 + 16 + 15 + 16, 64, 64, 3)
    parts = {name: _part(film, name) for name in ("scene-01", "bridge-01", "scene-02", "scene-03", "scene-04")}
    assert all(len(frames) == 16 for frames in parts.values())
    expected = np.concatenate(
        [parts["scene-01"], parts["bridge-01"][1:-1], parts["scene-02"], parts["scene-03"][1:], parts["scene-04"]]
    )
    # The film is H.264 (yuv420p, CRF 10) of the kept png frames, whose random-weights texture it cannot keep
    # pixel for pixel: compared as the means of 8x8 blocks, each film frame is its part's frame, and at each join
    # nearer to it than to the frame before.
    film_blocks, expected_blocks = _blocks(video), _blocks(expected)
    error = np.abs(film_blocks - expected_blocks).mean(axis=(1, 2, 3))
    assert error.max() < 4, error
    for start in (16, 30, 46, 61):  # the first frame of each part after the first
        before = np.abs(film_blocks[start] - expected_blocks[start - 1]).mean()
        assert before > 2 * error[start], (start, before, error[start])
    assert prompts[:2] == ["waves", "clouds"] and prompts[3] == "fire"
    assert prompts[2]  # chosen by describe


def test_a_continued_scene_starts_from_the_last_frame_and_a_bridge_joins_its_neighbours(four_scenes):
    import hashlib

    film, _ = four_scenes
    manifest = json.loads((scenes_folder(film) / "manifest.json").read_text())["parts"]

    def digest(frame):
        return hashlib.sha256(np.ascontiguousarray(frame).tobytes() + str(frame.shape).encode()).hexdigest()

    assert manifest["scene-03"]["inputs"]["start"] == digest(_part(film, "scene-02")[-1])
    assert manifest["bridge-01"]["inputs"]["start"] == digest(_part(film, "scene-01")[-1])
    assert manifest["bridge-01"]["inputs"]["end"] == hashlib.sha256((film.parent / "b.png").read_bytes()).hexdigest()
    assert manifest["bridge-01"]["inputs"]["preset"] == "tiny-tooncrafter"
    assert manifest["scene-02"]["inputs"]["sampling"] == {"steps": 1, "seed": 5}


def test_a_story_with_a_sound_track_is_one_mp4_with_one_aac_stream(four_scenes):
    film, _ = four_scenes
    assert streams(film) == [("Video", "h264"), ("Audio", "aac")]
    assert abs(audio_seconds(film) - 77 / 8) < 0.1


TWO_SCENES = HEAD + '[[scene]]\nimage = "a.png"\nprompt = "waves"\n[[scene]]\nimage = "c.png"\nprompt = "fire"\n'


def test_resume_after_a_killed_scene_renders_only_what_is_missing_or_changed(tmp_path, run_cli, monkeypatch):
    _pictures(tmp_path)
    board, film = tmp_path / "story.toml", tmp_path / "film.mp4"
    board.write_text(TWO_SCENES)
    real, rendered = dcrt.api.animate, []

    def animate(backend, image, prompt, **kwargs):
        rendered.append(prompt)
        if prompt == "fire" and len(rendered) == 2:
            raise RuntimeError("killed in scene 2")
        return real(backend, image, prompt, **kwargs)

    monkeypatch.setattr(dcrt.api, "animate", animate)
    with pytest.raises(RuntimeError, match="killed in scene 2"):
        dcrt.story(board, film, BackendRequest(random_weights=True))
    assert not film.exists()
    assert sorted(p.name for p in scenes_folder(film).iterdir()) == ["manifest.json", "scene-01"]
    kept = _part(film, "scene-01")

    code, out, err = run_cli(["story", str(board), "-o", str(film), "--resume"])
    assert code == 0, err
    assert out.strip() == str(film) and rendered == ["waves", "fire", "fire"]  # scene 1 read back, not rendered
    assert "scene 1: rendered before" in err
    np.testing.assert_array_equal(_part(film, "scene-01"), kept)
    assert len(read_video(film)) == 32

    board.write_text(TWO_SCENES.replace('"fire"', '"smoke"'))  # a changed scene renders again, alone
    code, _, err = run_cli(["story", str(board), "-o", str(film), "--resume"])
    assert code == 0, err
    assert rendered == ["waves", "fire", "fire", "smoke"]
    assert json.loads((scenes_folder(film) / "manifest.json").read_text())["parts"]["scene-02"]["prompt"] == "smoke"


def test_a_broken_manifest_is_one_line_before_any_model(tmp_path, run_cli, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr("dcrt.loading.open_backend", refuse)
    _pictures(tmp_path)
    board, film = tmp_path / "story.toml", tmp_path / "film.mp4"
    board.write_text(TWO_SCENES)
    scenes_folder(film).mkdir()
    (scenes_folder(film) / "manifest.json").write_text("[1, 2]")
    code, out, err = run_cli(["story", str(board), "-o", str(film), "--resume"])
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert "is not a story manifest: remove it" in err


def _pitch(film) -> float:
    """The loudest frequency (Hz) of the film's sound track: which sine wave was laid under it."""
    samples = audio_samples(film)[:8000]  # its first second at 8 kHz: 1 Hz bins
    return float(np.argmax(np.abs(np.fft.rfft(samples))))


def test_resume_keeps_the_sound_track_and_another_audio_replaces_it(tmp_path, run_cli, monkeypatch):
    """A story stopped in its first scene keeps its --audio in the manifest: a resume without --audio lays the same
    track under the film; a resume with another --audio uses that one, says so, and keeps it; a kept track that is
    gone is one line before any model."""
    _pictures(tmp_path)
    board, film = tmp_path / "story.toml", tmp_path / "film.mp4"
    board.write_text(HEAD + '[[scene]]\nimage = "a.png"\nprompt = "waves"\n')
    low, high = sine_wav(tmp_path / "low.wav", 1.0, hz=440), sine_wav(tmp_path / "high.wav", 1.0, hz=880)
    real = dcrt.api.animate

    def killed(*args, **kwargs):
        raise RuntimeError("killed in scene 1")

    monkeypatch.setattr(dcrt.api, "animate", killed)
    with pytest.raises(RuntimeError, match="killed in scene 1"):
        dcrt.story(board, film, BackendRequest(random_weights=True), sound=Sound(audio=low))
    manifest = scenes_folder(film) / "manifest.json"
    assert json.loads(manifest.read_text())["sound"] == {"audio": str(low.resolve())}
    monkeypatch.setattr(dcrt.api, "animate", real)

    code, out, err = run_cli(["story", str(board), "-o", str(film), "--resume"])  # no --audio
    assert code == 0, err
    assert f"sound track {low.resolve()}: kept in {manifest}" in err
    assert streams(film) == [("Video", "h264"), ("Audio", "aac")] and abs(audio_seconds(film) - 16 / 8) < 0.1
    assert abs(_pitch(film) - 440) <= 2

    code, _, err = run_cli(["story", str(board), "-o", str(film), "--resume", "--audio", str(high)])
    assert code == 0, err
    assert "scene 1: rendered before" in err and f"replaces {low.resolve()}, which {manifest} kept" in err
    assert abs(_pitch(film) - 880) <= 2
    assert json.loads(manifest.read_text())["sound"] == {"audio": str(high.resolve())}

    high.unlink()
    monkeypatch.setattr("dcrt.loading.open_backend", killed)
    code, out, err = run_cli(["story", str(board), "-o", str(film), "--resume"])
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert f"the sound track {manifest} keeps is gone: {high.resolve()}; give --audio" in err


def test_a_kept_library_pick_is_laid_again_without_asking_for_a_pick(tmp_path):
    from dcrt.director.story import resumed_sound

    library = tmp_path / "library"
    library.mkdir()
    rain = sine_wav(library / "rain.wav", 1.0)
    kept, said, manifest = {"library": str(library), "track": str(rain)}, [], tmp_path / "manifest.json"
    assert resumed_sound(Sound(), kept, manifest, said.append) == Sound(audio=rain)
    assert said == [f"sound track {rain}: kept in {manifest} (--audio or --audio-library changes it)"]
    assert Sound(library=library).record(rain) == {"library": str(library.resolve()), "track": str(rain.resolve())}
    asked = Sound(library=library)  # the same library asked for again: picked again, nothing to say
    assert resumed_sound(asked, kept, manifest, said.append) is asked and len(said) == 1
    assert resumed_sound(Sound(), None, manifest, said.append) == Sound()  # nothing kept
