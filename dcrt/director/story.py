"""`dcrt.story`: a storyboard (dcrt.director.storyboard) rendered into one film, scene by scene, through the Python
API like any user (`dcrt.animate`, and `dcrt.interpolate` for bridges).

Each part (a scene, or the bridge after it) is kept beside the film as a folder of png frames, `<film>.scenes/
scene-01/`, `bridge-01/`, ... (lossless: a resumed story joins exactly the frames it rendered), and
`<film>.scenes/manifest.json` records the inputs each was rendered from. With `resume`, a part whose inputs are
unchanged is read back instead of rendered; a changed scene, and every part that starts from its frames, renders
again. Both are written atomically (dcrt.atomic), after each part: an interrupted story loses at most the part it
was rendering. The manifest also keeps the film's sound track (the file, or the library and the track it picked),
so a resume without `--audio` lays the same track under the film again.

Joins: a "continue" scene starts from the previous scene's last frame, so its own first frame (that frame again)
is left out of the film; a bridge's first and last frames are the two frames it joins, so only its inner frames
go into the film.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from dcrt.atomic import atomic_file
from dcrt.director.llm import LLMRequest
from dcrt.director.sound import add_audio, check_sound, pick_tracks
from dcrt.director.storyboard import Scene, Storyboard, read_storyboard
from dcrt.errors import UsageError
from dcrt.loading import BackendRequest
from dcrt.video import DEFAULT_QUALITY, check_output_path, check_video_options, format_for

Log = Callable[[str], None]
# A part starts: (its index from 0, how many parts, its name, e.g. "scene 2" or "bridge 1 -> 2").
OnPart = Callable[[int, int, str], None]
MANIFEST = "manifest.json"
_MANIFEST_VERSION = 1


@dataclass(frozen=True)
class Part:
    """One clip of the film: a scene, or the bridge from `scene` to the next."""

    kind: str  # "scene" or "bridge"
    scene: Scene

    @property
    def folder(self) -> str:
        return f"{self.kind}-{self.scene.number:02d}"

    @property
    def label(self) -> str:
        n = self.scene.number
        return f"scene {n}" if self.kind == "scene" else f"bridge {n} -> {n + 1}"


def parts_of(board: Storyboard) -> list[Part]:
    """The clips in film order: each scene, then its bridge where its transition is one."""
    parts = []
    for scene in board.scenes:
        parts.append(Part("scene", scene))
        if scene.transition == "bridge":
            parts.append(Part("bridge", scene))
    return parts


def scenes_folder(film: Path) -> Path:
    return film.with_name(film.name + ".scenes")


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def _frame_digest(frame: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(frame).tobytes() + str(frame.shape).encode()).hexdigest()


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class _Renderer:
    """Opens each preset's backend (and CLIP, for auto prompts) once, when first needed."""

    def __init__(self, model: BackendRequest, log: Log):
        self.model, self.log = model, log
        self.backends: dict[str, object] = {}
        self.embedders: dict[str, object] = {}

    def request(self, preset: str) -> BackendRequest:
        return replace(self.model, preset=preset)

    def backend(self, preset: str):
        if preset not in self.backends:
            from dcrt.loading import open_backend

            config = self.request(preset).preset_config()
            self.backends[preset] = open_backend(self.request(preset), config.height, config.width, log=self.log)
        return self.backends[preset]

    def describe(self, preset: str, frame: np.ndarray) -> str:
        from dcrt.director.describe import describe, open_embedder

        if preset not in self.embedders:
            self.embedders[preset] = open_embedder(self.request(preset), self.log)
        return describe([frame], self.request(preset), top=1, embedder=self.embedders[preset])[0].prompt


@dataclass(frozen=True)
class Sound:
    """The film's sound track: a file, or the library track that best matches the scenes' prompts (by the first
    scene's CLIP text tower, or by `llm`). dcrt.director.sound."""

    audio: Path | None = None
    library: Path | None = None
    llm: LLMRequest | None = None

    def record(self, track: Path | None = None) -> dict | None:
        """The manifest's record of these choices (absolute paths: a resume may run from another folder), with the
        library's `track` once it is picked; None: no sound."""
        if self.audio is not None:
            return {"audio": str(self.audio.resolve())}
        if self.library is not None:
            picked = {} if track is None else {"track": str(track.resolve())}
            return {"library": str(self.library.resolve()), **picked}
        return None


def resumed_sound(sound: Sound, kept: dict | None, manifest: Path, log: Log) -> Sound:
    """The sound track a resumed story lays under its film: the one asked for, else the one its manifest keeps (a
    library's picked track itself: the film gets the same track, with no CLIP or chat model asked again).
    A resume asked for another track uses it and says so rather than refusing: the sound is laid under the film
    after the frames and is in no part's inputs, so a new one costs a mux, not a render, and the manifest then
    keeps it."""
    if sound.audio is None and sound.library is None:
        if kept is None:
            return sound
        track = kept.get("audio") or kept.get("track")
        if not Path(track or kept["library"]).exists():
            gone = track or kept["library"]
            raise UsageError(f"the sound track {manifest} keeps is gone: {gone}; give --audio or --audio-library")
        if track is not None:
            log(f"sound track {track}: kept in {manifest} (--audio or --audio-library changes it)")
            return replace(sound, audio=Path(track))
        log(f"sound track from the library {kept['library']}: kept in {manifest}")
        return replace(sound, library=Path(kept["library"]))
    asked = sound.record()
    if kept is not None and {k: kept[k] for k in asked if k in kept} != asked:
        was = kept.get("audio") or kept.get("track") or f"one from the library {kept['library']}"
        log(f"sound track {next(iter(asked.values()))}: replaces {was}, which {manifest} kept")
    return sound


def check_film(out: Path, sound: Sound = Sound()) -> str:
    """The film's path, format (its extension's) and sound track; returns the format."""
    fmt = format_for(out, None)
    check_output_path(out, fmt)
    check_sound(sound.audio, sound.library, fmt)
    return fmt


def check_story(
    board: Storyboard, out: Path, model: BackendRequest, quality: int = DEFAULT_QUALITY, sound: Sound = Sound()
) -> str:
    """Everything a story needs, checked before any model loads: the film's path and format, its sound track, the
    model options and every preset's weights (a missing checkpoint is one line). Returns the film's format."""
    fmt = check_film(out, sound)
    check_video_options(fmt, board.fps, quality)
    model.check_names()
    presets = {s.preset for s in board.scenes}
    presets |= {board.bridge_preset} if any(s.transition == "bridge" for s in board.scenes) else set()
    for preset in sorted(presets):
        replace(model, preset=preset).requested_weights()
    return fmt


def story(
    storyboard: Storyboard | str | Path,
    out: str | Path,
    model: BackendRequest | None = None,
    *,
    resume: bool = False,
    quality: int = DEFAULT_QUALITY,
    sound: Sound = Sound(),
    on_step: Callable[[int, int], None] | None = None,
    on_part: OnPart | None = None,
    log: Log | None = None,
) -> tuple[Path, list[str]]:
    """Render `storyboard` (a `Storyboard` or a TOML file) into the film `out` (mp4, gif, webp or a png folder), its
    parts kept in `<out>.scenes/`. `model`: the weights options every preset takes (random_weights, device, dtype,
    backend; its preset is ignored). `resume`: read back the parts rendered before from unchanged inputs. `sound`:
    a track laid under an mp4 film.
    Returns the film's path and each scene's prompt (the chosen one where the storyboard says "auto")."""
    from dcrt.api import animate, interpolate
    from dcrt.video import read_video, write_video

    board = storyboard if isinstance(storyboard, Storyboard) else read_storyboard(Path(storyboard))
    out, model, log = Path(out), model or BackendRequest(), log or (lambda message: None)
    folder = scenes_folder(out)
    manifest, kept_sound = _read_manifest(folder) if resume else ({}, None)
    if resume:
        sound = resumed_sound(sound, kept_sound, folder / MANIFEST, log)
    fmt = check_story(board, out, model, quality, sound)  # a kept track that is gone is one line here
    folder.mkdir(exist_ok=True)
    sound_record = sound.record()
    _write_manifest(folder, manifest, sound_record)  # before the first part: a story stopped in it keeps its sound
    renderer = _Renderer(model, log)
    parts, film, prompts = parts_of(board), [], {}
    last: np.ndarray | None = None  # the last frame of the part before
    for index, part in enumerate(parts):
        scene = part.scene
        if on_part is not None:
            on_part(index, len(parts), part.label)
        start, end, preset, asked, inputs = _inputs(board, part, last, prompts, renderer)
        key, kept = _digest(inputs), manifest.get(part.folder, {})
        if resume and kept.get("key") == key and (folder / part.folder).is_dir():
            log(f"{part.label}: rendered before, read back from {folder / part.folder}")
            frames = read_video(folder / part.folder)
        else:
            prompt = inputs["prompt"]
            if prompt is None:
                prompt = renderer.describe(preset, start)
                log(f"{part.label}: auto prompt {prompt!r}")
            backend = renderer.backend(preset)
            if part.kind == "scene":
                frames = animate(backend, start, prompt, on_step=on_step, **asked).frames
            else:
                frames = interpolate(backend, start, end, prompt, on_step=on_step, **asked).frames
            shutil.rmtree(folder / part.folder, ignore_errors=True)  # a changed part's frames, rendered before
            write_video(frames, folder / part.folder, "png")
            kept = {"key": key, "inputs": inputs, "prompt": prompt, "frames": len(frames)}
            manifest[part.folder] = kept
            _write_manifest(folder, manifest, sound_record)
        if part.kind == "scene":
            prompts[scene.number] = kept["prompt"]
            continues = scene.number > 1 and scene.image is None
            film.append(frames[1:] if continues else frames)
        else:
            film.append(frames[1:-1])
        last = frames[-1]
    write_video(np.concatenate(film), out, fmt, fps=board.fps, quality=quality)
    said = [prompts[s.number] for s in board.scenes]
    track = sound.audio
    if sound.library is not None:
        request = renderer.request(board.scenes[0].preset)
        track = pick_tracks(sound.library, ["; ".join(said)], request, log, sound.llm)[0]
        _write_manifest(folder, manifest, sound.record(track))
    if track is not None:
        add_audio(out, track)
    return out, said


def _inputs(board: Storyboard, part: Part, last: np.ndarray | None, prompts: dict[int, str], renderer: _Renderer):
    """What `part` renders from: its start (an image, or the last frame before), a bridge's end image, its preset
    and sampling settings, and the inputs the manifest records (images as digests; a bridge follows the prompt its
    scene was rendered with)."""
    from dcrt.images import open_image

    scene, end = part.scene, None
    if part.kind == "scene":
        start = last if scene.image is None else np.asarray(open_image(scene.image))
        inputs = {"start": _frame_digest(start) if scene.image is None else _file_digest(scene.image)}
        preset, prompt = scene.preset, scene.prompt
        asked = {"steps": scene.steps, "frames": scene.frames, "seed": scene.seed}
    else:
        following = board.scenes[scene.number]  # the scene the bridge leads into (numbers count from 1)
        start, end = last, np.asarray(open_image(following.image))
        inputs = {"start": _frame_digest(start), "end": _file_digest(following.image)}
        preset, prompt, asked = board.bridge_preset, prompts[scene.number], {"steps": scene.steps}
    asked = {k: v for k, v in asked.items() if v is not None}
    weights = str(renderer.request(preset).requested_weights())
    inputs |= {"kind": part.kind, "preset": preset, "weights": weights, "prompt": prompt, "sampling": asked}
    return start, end, preset, asked, inputs


def _read_manifest(folder: Path) -> tuple[dict, dict | None]:
    """The parts a manifest keeps and its sound record ({} and None: no manifest, or one of another version)."""
    path = folder / MANIFEST
    if not path.is_file():
        return {}, None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise UsageError(f"{path} is not a story manifest: remove it to render every scene again")
    if data.get("version") != _MANIFEST_VERSION:
        return {}, None
    sound = data.get("sound")
    if sound is not None and not (isinstance(sound, dict) and {"audio", "library"} & set(sound)):
        raise UsageError(f'{path}: "sound" is not a sound track record: remove that key')
    return data.get("parts", {}), sound


def _write_manifest(folder: Path, parts: dict, sound: dict | None) -> None:
    path = folder / MANIFEST
    state = {"version": _MANIFEST_VERSION, "parts": parts, "sound": sound}
    with atomic_file(path, suffix=".json") as tmp:
        tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
