"""A storyboard: the scenes of a story, read from TOML (the standard library's tomllib) and checked whole before any
model loads. Every mistake is one UsageError line naming the scene and the field.

    [story]                              # optional; what every scene takes unless it says otherwise
    preset = "512"                       # the scenes' preset (animate)
    bridge_preset = "512-interp"         # the preset of "bridge" transitions (interpolate: 512-interp, tooncrafter)
    steps = 50                           # DDIM steps of every clip
    fps = 8                              # the film's frame rate

    [[scene]]
    image = "harbour.png"                # a path (relative to the storyboard), or "continue" (the default): the
                                         # previous scene's last frame
    prompt = "boats rocking on the waves" # or "auto" (the default): the prompt `dcrt describe` ranks first
    frames = 16                          # the preset's window by default; longer: sampled in windows
    seed = 123                           # the preset's by default
    transition = "bridge"                # into the next scene: "cut", "continue" (the next scene starts from this
                                         # one's last frame), or "bridge" (an interpolated clip from this scene's
                                         # last frame to the next scene's image); default: "continue" before a
                                         # scene without an image, else "cut"
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path

from dcrt.batch import AUTO_PROMPT
from dcrt.errors import UsageError
from dcrt.video import DEFAULT_FPS, MAX_FPS

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, before it joined the standard library
    import tomli as tomllib

CONTINUE = "continue"
TRANSITIONS = ("cut", "continue", "bridge")
DEFAULT_PRESET, DEFAULT_BRIDGE_PRESET = "512", "512-interp"
STORY_KEYS = ("preset", "bridge_preset", "steps", "fps")
SCENE_KEYS = ("image", "prompt", "frames", "seed", "preset", "steps", "transition")
MAX_SCENES = 64


@dataclass(frozen=True)
class Scene:
    number: int  # 1-based, as the error lines count
    image: Path | None  # None: the previous scene's last frame
    prompt: str | None  # None: chosen by describe
    preset: str
    steps: int | None  # None: the preset's default
    frames: int | None
    seed: int | None
    transition: str  # into the next scene; the last scene's is "cut"


@dataclass(frozen=True)
class Storyboard:
    scenes: tuple[Scene, ...]
    bridge_preset: str
    fps: int


def _where(number: int | None, key: str) -> str:
    return f"[story] {key}" if number is None else f"scene {number}: {key}"


def _typed(value, kind: type, number: int | None, key: str):
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise UsageError(f"{_where(number, key)} must be a whole number, got {value!r}")
    if kind is str and (not isinstance(value, str) or not value.strip()):
        raise UsageError(f"{_where(number, key)} must be non-empty text, got {value!r}")
    return value


def _unknown(table: dict, allowed: tuple[str, ...], number: int | None) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        where = "[story]" if number is None else f"scene {number}"
        raise UsageError(f"{where}: unknown key {unknown[0]!r}; choose from {', '.join(allowed)}")


def read_storyboard(path: Path) -> Storyboard:
    """The storyboard in TOML file `path`, checked (`check_storyboard`); images are relative to its folder."""
    if not path.is_file():
        raise UsageError(f"storyboard {path} does not exist")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"storyboard {path} is not TOML: {exc}") from None
    return parse_storyboard(data, path.parent)


def parse_storyboard(data: dict, base: Path = Path(".")) -> Storyboard:
    """A storyboard from TOML's tables (`[story]`, `[[scene]]`), checked; relative images are under `base`."""
    _unknown(data, ("story", "scene"), None)
    story = data.get("story", {})
    raw = data.get("scene", [])
    if not isinstance(story, dict) or not isinstance(raw, list) or not all(isinstance(s, dict) for s in raw):
        raise UsageError("a storyboard has one [story] table and [[scene]] tables")
    _unknown(story, STORY_KEYS, None)
    if not 1 <= len(raw) <= MAX_SCENES:
        raise UsageError(f"a storyboard has 1 to {MAX_SCENES} [[scene]] tables, got {len(raw)}")
    preset = _typed(story.get("preset", DEFAULT_PRESET), str, None, "preset")
    bridge = _typed(story.get("bridge_preset", DEFAULT_BRIDGE_PRESET), str, None, "bridge_preset")
    steps = _typed(story["steps"], int, None, "steps") if "steps" in story else None
    fps = _typed(story.get("fps", DEFAULT_FPS), int, None, "fps")
    if not 1 <= fps <= MAX_FPS["gif"]:
        raise UsageError(f"[story] fps must be from 1 to {MAX_FPS['gif']}, got {fps}")
    scenes = [_scene(i + 1, table, base, preset, steps) for i, table in enumerate(raw)]
    scenes = _with_transitions(scenes, raw)
    board = Storyboard(tuple(scenes), bridge, fps)
    check_storyboard(board)
    return board


def _scene(number: int, table: dict, base: Path, preset: str, steps: int | None) -> Scene:
    _unknown(table, SCENE_KEYS, number)
    image = _typed(table.get("image", CONTINUE), str, number, "image")
    prompt = _typed(table.get("prompt", AUTO_PROMPT), str, number, "prompt")
    return Scene(
        number=number,
        image=None if image == CONTINUE else base / image,
        prompt=None if prompt == AUTO_PROMPT else " ".join(prompt.split()),
        preset=_typed(table.get("preset", preset), str, number, "preset"),
        steps=_typed(table["steps"], int, number, "steps") if "steps" in table else steps,
        frames=_typed(table["frames"], int, number, "frames") if "frames" in table else None,
        seed=_typed(table["seed"], int, number, "seed") if "seed" in table else None,
        transition="cut",
    )


def _with_transitions(scenes: list[Scene], raw: list[dict]) -> list[Scene]:
    """Each scene's transition into the next, given or implied by the next scene's image; checked against it."""
    done = []
    for scene, table, following in zip(scenes, raw, [*scenes[1:], None]):
        implied = CONTINUE if following is not None and following.image is None else "cut"
        transition = _typed(table.get("transition", implied), str, scene.number, "transition")
        if transition not in TRANSITIONS:
            raise UsageError(
                f"scene {scene.number}: transition must be one of {', '.join(TRANSITIONS)}, got {transition!r}"
            )
        if following is None and transition != "cut":
            raise UsageError(f"scene {scene.number}: transition {transition!r} needs a next scene: this is the last")
        if following is not None and transition == CONTINUE and following.image is not None:
            raise UsageError(
                f"scene {following.number}: image: scene {scene.number} continues into it, so it starts from that "
                'scene\'s last frame: leave image out (or "continue"), or make the transition "cut" or "bridge"'
            )
        if following is not None and transition != CONTINUE and following.image is None:
            raise UsageError(
                f"scene {following.number}: image: it continues from scene {scene.number}, whose transition is "
                f'{transition!r}: give this scene an image, or make that transition "continue"'
            )
        done.append(replace(scene, transition=transition))
    return done


def check_storyboard(board: Storyboard) -> None:
    """Images exist, presets exist and can do their part (scenes animate, bridges interpolate) at one size, and
    each scene's sampling settings are ones its preset takes: one UsageError line naming the scene and field."""
    from dcrt.families.dynamicrafter.options import resolve_options
    from dcrt.presets import get_preset

    size = None
    for scene in board.scenes:
        if scene.image is None and scene.number == 1:
            raise UsageError("scene 1: image: the first scene has nothing to start from: give it an image")
        if scene.image is not None and not scene.image.is_file():
            raise UsageError(f"scene {scene.number}: image: {scene.image} does not exist")
        preset = _preset(get_preset, scene.preset, scene.number, "preset", "animate")
        size = size or (preset.height, preset.width, scene.number)
        if (preset.height, preset.width) != size[:2]:
            raise UsageError(
                f"scene {scene.number}: preset: {preset.name} renders {preset.height}x{preset.width}, scene "
                f"{size[2]} {size[0]}x{size[1]}: a film has one size"
            )
        for key in ("steps", "frames", "seed"):
            value = getattr(scene, key)
            if value is not None:
                try:
                    resolve_options(preset, "animate", **{key: value})
                except UsageError as exc:
                    raise UsageError(f"scene {scene.number}: {key}: {exc}") from None
    if any(s.transition == "bridge" for s in board.scenes):
        bridge = _preset(get_preset, board.bridge_preset, None, "bridge_preset", "interpolate")
        if (bridge.height, bridge.width) != size[:2]:
            raise UsageError(
                f"[story] bridge_preset: {bridge.name} renders {bridge.height}x{bridge.width}, the scenes "
                f"{size[0]}x{size[1]}: a film has one size"
            )


def _preset(get_preset, name: str, number: int | None, key: str, mode: str):
    try:
        preset = get_preset(name)
    except UsageError as exc:
        raise UsageError(f"{_where(number, key)}: {exc}") from None
    try:
        preset.require_family("dynamicrafter", "stories (their prompts are text)")
    except UsageError as exc:
        raise UsageError(f"{_where(number, key)}: {exc}") from None
    if mode not in preset.modes:
        what = "animate" if mode == "animate" else "interpolate (512-interp, tooncrafter, tiny, tiny-tooncrafter)"
        raise UsageError(f"{_where(number, key)}: preset {name} cannot {what}")
    return preset


def storyboard_toml(board: Storyboard, base: Path) -> str:
    """`board` as the TOML `read_storyboard` reads (images relative to `base` where they are under it)."""

    def text(value: str) -> str:  # a JSON string is a TOML basic string (same escapes)
        import json

        return json.dumps(value, ensure_ascii=False)

    lines = ["[story]", f"preset = {text(board.scenes[0].preset)}", f"bridge_preset = {text(board.bridge_preset)}"]
    lines.append(f"fps = {board.fps}")
    for scene in board.scenes:
        lines += ["", "[[scene]]"]
        if scene.image is not None:
            image = scene.image.relative_to(base) if scene.image.is_relative_to(base) else scene.image
            lines.append(f"image = {text(str(image))}")
        else:
            lines.append(f"image = {text(CONTINUE)}")
        lines.append(f"prompt = {text(scene.prompt or AUTO_PROMPT)}")
        lines += [
            f"{key} = {getattr(scene, key)}" for key in ("steps", "frames", "seed") if getattr(scene, key) is not None
        ]
        if scene.preset != board.scenes[0].preset:
            lines.append(f"preset = {text(scene.preset)}")
        lines.append(f"transition = {text(scene.transition)}")
    return "\n".join(lines) + "\n"
