"""Sound tracks under a video: muxed as one AAC stream cut or looped to the video's length with the picture
unchanged, refused in one line before any model loads, and picked from a library by planted embeddings."""

from __future__ import annotations

import numpy as np
import pytest
from _audio import audio_samples, audio_seconds, sine_wav, streams
from _videos import moving_square
from PIL import Image

from dcrt.director.sound import FADE_OUT_S, add_audio, library_tracks, pick_track
from dcrt.errors import UsageError
from dcrt.video import read_video, write_video

TINY = ["--res", "tiny", "--steps", "2"]


@pytest.fixture
def clip(tmp_path):
    """16 frames at 8 fps: a 2 s H.264 mp4."""
    return write_video(moving_square((4, 0), frames=16, size=(128, 160)), tmp_path / "clip.mp4", fps=8)


@pytest.fixture
def picture(tmp_path):
    path = tmp_path / "in.png"
    Image.fromarray((np.random.default_rng(1).random((60, 90, 3)) * 255).astype(np.uint8)).save(path)
    return path


@pytest.mark.parametrize("track_seconds", [0.7, 5.0], ids=["looped", "cut"])
def test_one_aac_stream_as_long_as_the_video_and_the_same_frames(clip, tmp_path, track_seconds):
    before = read_video(clip)
    out = add_audio(clip, sine_wav(tmp_path / "sine.wav", track_seconds), tmp_path / "film.mp4")
    assert streams(out) == [("Video", "h264"), ("Audio", "aac")]
    assert abs(audio_seconds(out) - 2.0) < 0.1
    np.testing.assert_array_equal(read_video(out), before)  # the video stream is copied, not re-encoded
    samples = audio_samples(out)
    rate = len(samples) / audio_seconds(out)
    # Sound throughout (a looped track has no gap), then the fade-out: the last tenth of a second near silence.
    middle = samples[: int(rate * (2.0 - FADE_OUT_S))]
    windows = middle[: len(middle) // 800 * 800].reshape(-1, 800)
    assert np.abs(windows).max(axis=1).min() > 0.2
    assert np.abs(samples[-int(rate * 0.05) :]).max() < 0.1


def test_muxing_over_the_video_itself_leaves_no_temporary_file(clip, tmp_path):
    add_audio(clip, sine_wav(tmp_path / "sine.wav", 1.0))
    assert streams(clip) == [("Video", "h264"), ("Audio", "aac")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "sine.wav"]


def test_animate_with_audio_writes_one_mp4_with_aac(picture, tmp_path, run_cli):
    target = tmp_path / "out.mp4"
    track = sine_wav(tmp_path / "sine.wav", 1.0)
    code, out, err = run_cli(["animate", str(picture), "a cat", *TINY, "--audio", str(track), "-o", str(target)])
    assert code == 0, err
    assert out.strip() == str(target)
    assert streams(target) == [("Video", "h264"), ("Audio", "aac")]
    assert abs(audio_seconds(target) - 16 / 8) < 0.1


def _not_audio(tmp_path):
    path = tmp_path / "noise.wav"
    path.write_text("not a wave")
    return path


@pytest.mark.parametrize(
    "case, expected",
    [
        (lambda d: ["-o", str(d / "out.gif"), "--audio", str(sine_wav(d / "s.wav", 1))], "needs an mp4 output"),
        (lambda d: ["-o", str(d / "out"), "--format", "png", "--audio", str(sine_wav(d / "s.wav", 1))], "mp4"),
        (lambda d: ["-o", str(d / "o.webp"), "--audio-library", str(d)], "--audio-library needs an mp4"),
        (lambda d: ["--audio", str(d / "missing.mp3")], "does not exist"),
        (lambda d: ["--audio", str(d / "track.ogg")], "must be one of wav, mp3, m4a, flac"),
        (lambda d: ["--audio", str(_not_audio(d))], "is not audio ffmpeg can read"),
        (lambda d: ["--audio-library", str(d / "none")], "is not a folder"),
        (lambda d: ["--audio-library", str(d)], "holds no wav, mp3, m4a, flac files"),
        (lambda d: ["--audio", str(sine_wav(d / "s.wav", 1)), "--audio-library", str(d)], "use one"),
    ],
)
def test_bad_audio_is_one_line_exit_2_before_any_model(picture, tmp_path, run_cli, no_model_loads, case, expected):
    library = tmp_path / "lib"
    library.mkdir()
    code, out, err = run_cli(["animate", str(picture), "a cat", *TINY, *case(library)])
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and expected in err, err
    assert out == ""


def test_loop_and_interpolate_take_audio_too(picture, tmp_path, run_cli, no_model_loads):
    for command in (["loop", str(picture)], ["interpolate", str(picture), str(picture)]):
        code, _, err = run_cli([*command, "x", *TINY, "-o", str(tmp_path / "o.gif"), "--audio", str(tmp_path)])
        assert code == 2 and "--audio needs an mp4 output" in err, err


@pytest.mark.parametrize(("command", "frames"), [("loop", 15), ("interpolate", 16)])
def test_loop_and_interpolate_lay_the_track_under_their_mp4(picture, tmp_path, run_cli, command, frames):
    """End to end, as animate's: one AAC stream as long as the video (a loop leaves out its repeated last frame)."""
    target = tmp_path / "out.mp4"
    track = sine_wav(tmp_path / "sine.wav", 1.0)  # shorter than the video: looped under it
    images = [str(picture)] * (2 if command == "interpolate" else 1)
    args = [command, *images, "a cat", "--res", "tiny", "--steps", "1", "--audio", str(track), "-o", str(target)]
    code, out, err = run_cli(args)
    assert code == 0, err
    assert out.strip() == str(target)
    assert streams(target) == [("Video", "h264"), ("Audio", "aac")]
    assert abs(audio_seconds(target) - frames / 8) < 0.1


class PlantedEmbedder:
    """Text embeddings chosen by the test: each known text its own row; the prompt near one of them."""

    logit_scale = 100.0

    def __init__(self, rows: dict[str, np.ndarray]):
        self.rows = rows
        self.asked: list[list[str]] = []

    def embed_texts(self, prompts: list[str]) -> np.ndarray:
        self.asked.append(list(prompts))
        rows = np.stack([self.rows[p] for p in prompts]).astype(np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_library_pick_follows_the_planted_embeddings_and_the_sidecar_tags(tmp_path):
    for name in ("calm_sea.wav", "storm-drums.mp3", "birds.flac"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "birds.txt").write_text("morning  forest\nsongbirds\n")
    (tmp_path / "notes.md").write_text("not a track")
    tracks = library_tracks(tmp_path)
    assert [(t.name, t.tags) for t in tracks] == [
        ("birds.flac", "morning forest songbirds"),
        ("calm_sea.wav", "calm sea"),
        ("storm-drums.mp3", "storm drums"),
    ]
    basis = np.eye(4)
    rows = {"morning forest songbirds": basis[0], "calm sea": basis[1], "storm drums": basis[2]}
    for prompt, near, expected in [("waves", 1, "calm_sea.wav"), ("thunder", 2, "storm-drums.mp3")]:
        embedder = PlantedEmbedder(rows | {prompt: basis[near] + 0.4 * basis[3] + 0.1 * basis[0]})
        assert pick_track(tmp_path, prompt, embedder).name == expected
        assert embedder.asked == [[prompt, "morning forest songbirds", "calm sea", "storm drums"]]


def test_a_library_pick_without_a_text_tower_or_llm_is_refused(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"")
    with pytest.raises(UsageError, match="needs a CLIP text tower or --llm"):
        pick_track(tmp_path, "waves")


def test_animate_lays_the_library_track_its_clip_text_tower_picks(picture, tmp_path, run_cli, monkeypatch):
    """The wiring of --audio-library in the generating commands, without sampling: the backend and the writer are
    stand-ins (a 2 s clip), the pick is the tiny preset's CLIP's, and the muxed sound is the picked track's tone."""
    from dcrt.director.clip_space import load_clip_space
    from dcrt.presets import get_preset
    from dcrt.weights import Weights

    library = tmp_path / "tracks"
    library.mkdir()
    tones = {"calm_sea.wav": 440.0, "storm_drums.wav": 1000.0}
    for name, hz in tones.items():
        sine_wav(library / name, 1.0, hz)
    expected = pick_track(library, "a cat", load_clip_space(get_preset("tiny"), Weights("tiny")))

    def save_video(backend, mode, images, prompt, path, *, fps, **kwargs):
        assert prompt == "a cat"
        return write_video(moving_square((4, 0), frames=16, size=(128, 160)), path, fps=fps)

    monkeypatch.setattr("dcrt.loading.open_backend", lambda *args, **kwargs: object())
    monkeypatch.setattr("dcrt.api.save_video", save_video)
    target = tmp_path / "out.mp4"
    code, _, err = run_cli(
        ["animate", str(picture), "a cat", *TINY, "--audio-library", str(library), "-o", str(target)]
    )
    assert code == 0, err
    assert f"sound track for 'a cat': {expected.name}" in err
    samples = audio_samples(target)
    spectrum = np.abs(np.fft.rfft(samples[:8000]))  # the first second, at 8 kHz: 1 Hz per bin
    assert abs(int(np.argmax(spectrum)) - tones[expected.name]) <= 2


@pytest.mark.parametrize("suffix", [".mp3", ".m4a", ".flac"])
def test_mp3_m4a_and_flac_tracks_are_probed_and_muxed(clip, tmp_path, suffix):
    import subprocess

    from dcrt.director.sound import check_audio, ffmpeg

    track = tmp_path / f"sine{suffix}"
    wav = sine_wav(tmp_path / "sine.wav", 3.0)
    subprocess.run([ffmpeg(), "-v", "error", "-i", str(wav), str(track)], check=True, timeout=60)
    check_audio(track, "mp4")
    add_audio(clip, track)
    assert streams(clip) == [("Video", "h264"), ("Audio", "aac")]
    assert abs(audio_seconds(clip) - 2.0) < 0.1
