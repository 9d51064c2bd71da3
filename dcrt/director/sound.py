"""Sound tracks under a video: one chosen (`--audio`) or picked from a library by its tags (`--audio-library`),
trimmed or looped to the video's length with a short fade-out, and muxed as AAC into the mp4.

Everything runs through the one ffmpeg dcrt already uses to write mp4s (`imageio_ffmpeg.get_ffmpeg_exe()`). The
video stream is copied, not re-encoded, so the picture is the same frame for frame; the muxed file is written
beside the video and renamed over it (dcrt.atomic).

A library is a folder of tracks (wav, mp3, m4a, flac); each track's tags are the text of `<stem>.txt` beside it,
else its file name with `_` and `-` read as spaces. The track whose tags best match the prompt is picked: by
cosine similarity in the checkpoint's CLIP text space (dcrt.director.clip_space), or by a chat model (llm).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dcrt.atomic import atomic_file
from dcrt.errors import DcrtError, UsageError

if TYPE_CHECKING:
    from collections.abc import Callable

    from dcrt.director.clip_space import Embedder
    from dcrt.director.llm import LLMRequest
    from dcrt.loading import BackendRequest

AUDIO_SUFFIXES = (".wav", ".mp3", ".m4a", ".flac")
FADE_OUT_S = 0.5  # at most a quarter of the video: a 2 s clip fades over its last 0.5 s
AAC_BITRATE = "128k"
_PROBE_TIMEOUT_S = 60

TRACK_PROMPT = """You choose the sound track for a short video. You get the video's prompt (what moves in it) and \
a list of tracks, each with its name and tags. Pick the one track whose mood and sounds fit the video best.
Answer with JSON only, no other text: {"track": "the track's name exactly as given"}."""


def ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _run(args: list[str], timeout: float = _PROBE_TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run([ffmpeg(), "-hide_banner", "-nostdin", *args], capture_output=True, timeout=timeout)


def _last_line(stderr: bytes) -> str:
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "no audio"


def check_audio(path: Path, fmt: str) -> None:
    """One UsageError line for a sound track that cannot go under a `fmt` video: an output without sound (gif,
    webp, png), another file type, a missing file, or one ffmpeg cannot decode audio from (it is probed)."""
    if fmt != "mp4":
        raise UsageError(f"--audio needs an mp4 output: {fmt} holds no sound track")
    if path.suffix.lower() not in AUDIO_SUFFIXES:
        raise UsageError(f"audio file {path} must be one of {', '.join(s[1:] for s in AUDIO_SUFFIXES)}")
    if not path.is_file():
        raise UsageError(f"audio file {path} does not exist")
    # Decode the first 0.1 s of the first audio stream: no stream, or bytes that are not audio, fail here.
    probed = _run(["-v", "error", "-i", str(path), "-map", "0:a:0", "-t", "0.1", "-f", "null", "-"])
    if probed.returncode != 0:
        raise UsageError(f"{path} is not audio ffmpeg can read: {_last_line(probed.stderr)}")


def check_sound(audio: Path | None, library: Path | None, fmt: str) -> None:
    """--audio or --audio-library for a `fmt` video, checked before any model loads (every library track probed)."""
    if audio is not None and library is not None:
        raise UsageError("--audio and --audio-library both choose the sound track: use one")
    if audio is not None:
        check_audio(audio, fmt)
    if library is not None:
        if fmt != "mp4":
            raise UsageError(f"--audio-library needs an mp4 output: {fmt} holds no sound track")
        for track in library_tracks(library):
            check_audio(track.path, fmt)


def video_seconds(video: Path) -> float:
    """The length of `video`: its frame count over its frame rate (what a player shows)."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(video))
    fps = next(reader)["fps"]
    frames = sum(1 for _ in reader)
    return frames / fps


def add_audio(video: Path, audio: Path, out: Path | None = None) -> Path:
    """`video` (an mp4) with `audio` under it as AAC, written to `out` (default: over `video`). The track is cut,
    or looped, to the video's length and fades out over its last FADE_OUT_S seconds; the video stream is copied."""
    out = out or video
    seconds = video_seconds(video)
    fade = min(FADE_OUT_S, seconds / 4)
    with atomic_file(out, suffix=".mp4") as tmp:
        # -stream_loop before the track's -i repeats it without end; -t cuts the output at the video's length.
        args = ["-v", "error", "-y", "-i", str(video), "-stream_loop", "-1", "-i", str(audio)]
        args += ["-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy"]
        args += ["-af", f"afade=t=out:st={seconds - fade:.6f}:d={fade:.6f}", "-c:a", "aac", "-b:a", AAC_BITRATE]
        args += ["-t", f"{seconds:.6f}", "-movflags", "+faststart", "-f", "mp4", str(tmp)]
        done = _run(args, timeout=max(_PROBE_TIMEOUT_S, 10 * seconds))
        if done.returncode != 0:
            raise DcrtError(f"ffmpeg could not lay {audio} under {video}: {_last_line(done.stderr)}")
    return out


@dataclass(frozen=True)
class Track:
    path: Path
    tags: str

    @property
    def name(self) -> str:
        return self.path.name


def _tags(path: Path) -> str:
    sidecar = path.with_suffix(".txt")
    if sidecar.is_file():
        text = " ".join(sidecar.read_text(encoding="utf-8", errors="replace").split())
        if text:
            return text
    return " ".join(path.stem.replace("_", " ").replace("-", " ").split())


def library_tracks(directory: Path) -> list[Track]:
    """The tracks of a library folder, sorted by name; one UsageError line for a folder that is missing or holds
    none."""
    if not directory.is_dir():
        raise UsageError(f"audio library {directory} is not a folder")
    paths = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    if not paths:
        raise UsageError(f"audio library {directory} holds no {', '.join(s[1:] for s in AUDIO_SUFFIXES)} files")
    return [Track(p, _tags(p)) for p in paths]


def pick_by_embedding(tracks: list[Track], prompt: str, embedder: Embedder) -> Track:
    """The track whose tags are nearest the prompt in `embedder`'s text space (cosine; ties: the first by name)."""
    rows = embedder.embed_texts([prompt, *(t.tags for t in tracks)])  # L2-normalised [1 + N, D]
    return tracks[int(np.argmax(rows[1:] @ rows[0]))]


def pick_by_llm(tracks: list[Track], prompt: str, request: LLMRequest) -> Track:
    """The track a chat model picks for the prompt; an answer naming no track of the list is one LLMError line."""
    from dcrt.director.llm import LLMError, ask, json_answer, quoted

    question = json.dumps({"prompt": prompt, "tracks": [{"name": t.name, "tags": t.tags} for t in tracks]})
    answer = json_answer(ask(request, TRACK_PROMPT, question))
    name = answer.get("track") if isinstance(answer, dict) else answer
    by_name = {t.name: t for t in tracks}
    if not isinstance(name, str) or name not in by_name:
        raise LLMError(f"the chat model's answer names no track of the library: {quoted(json.dumps(answer))}")
    return by_name[name]


def pick_track(directory: Path, prompt: str, embedder: Embedder | None = None, llm: LLMRequest | None = None) -> Track:
    """The library's track for `prompt`: asked of `llm` when given, else matched in `embedder`'s text space."""
    tracks = library_tracks(directory)
    if llm is not None:
        return pick_by_llm(tracks, prompt, llm)
    if embedder is None:
        raise UsageError("picking a track from an audio library needs a CLIP text tower or --llm")
    return pick_by_embedding(tracks, prompt, embedder)


def pick_tracks(
    library: Path, prompts: list[str], model: BackendRequest, log: Callable[[str], None], llm: LLMRequest | None = None
) -> list[Path]:
    """One library track per prompt: by `model`'s CLIP text tower (loaded once, freed before the video model), or
    by `llm` when given."""
    embedder = None
    if llm is None:
        from dcrt.director.describe import open_embedder

        embedder = open_embedder(model, log)
    picked = [pick_track(library, prompt, embedder, llm) for prompt in prompts]
    for prompt, track in zip(prompts, picked):
        log(f"sound track for {prompt!r}: {track.name} ({track.tags!r})")
    return [track.path for track in picked]
