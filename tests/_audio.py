"""Sound tracks with known lengths, and what ffmpeg says a muxed file holds: for the sound, story and Magic
Animator tests."""

from __future__ import annotations

import re
import subprocess
import wave
from pathlib import Path

import numpy as np

from dcrt.director.sound import ffmpeg

_RATE = 8000  # Hz of the decoded audio the tests measure


def sine_wav(path: Path, seconds: float, hz: float = 440.0, rate: int = 22050) -> Path:
    """A mono 16-bit sine wave of `seconds`."""
    t = np.arange(round(seconds * rate)) / rate
    samples = (0.3 * 32767 * np.sin(2 * np.pi * hz * t)).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return path


def streams(path: Path) -> list[tuple[str, str]]:
    """(kind, codec) of each stream of a media file, as `ffmpeg -i` lists them: e.g. [("Video", "h264"), ...]."""
    said = subprocess.run(
        [ffmpeg(), "-hide_banner", "-i", str(path)], capture_output=True, text=True, timeout=60
    ).stderr
    return re.findall(r"Stream #\d+:\d+\S*: (Video|Audio): (\w+)", said)


def audio_seconds(path: Path) -> float:
    """The length of the first audio stream, counted in decoded samples."""
    return len(audio_samples(path)) / _RATE


def audio_samples(path: Path) -> np.ndarray:
    """The first audio stream decoded to mono float32 in [-1, 1] at _RATE Hz."""
    args = [ffmpeg(), "-v", "error", "-i", str(path), "-map", "0:a:0", "-ac", "1", "-ar", str(_RATE)]
    pcm = subprocess.run([*args, "-f", "s16le", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(pcm, "<i2").astype(np.float32) / 32767
