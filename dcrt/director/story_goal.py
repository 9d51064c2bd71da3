"""A storyboard written by a chat model from a goal and the first image (dcrt.director.llm's client): the scenes'
prompts, each scene continuing from the last frame of the one before. The answer is checked as every chat answer
is (one LLMError line for one that cannot be used), then written as TOML the user can edit and render."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dcrt.atomic import atomic_file
from dcrt.director.llm import LLMError, LLMRequest, ask, checked_prompt, data_url, json_answer, quoted
from dcrt.director.storyboard import DEFAULT_BRIDGE_PRESET, Scene, Storyboard, check_storyboard, storyboard_toml
from dcrt.errors import UsageError
from dcrt.video import DEFAULT_FPS

MAX_GOAL_SCENES = 8

STORY_PROMPT = f"""You plan short films made with DynamiCrafter, an image-to-video diffusion model that animates a \
still image following a short English motion prompt. You get the film's goal and its first image. Split the goal \
into 2 to {MAX_GOAL_SCENES} scenes in order; each scene is animated from the last frame of the scene before (the \
first from the image), so each prompt says how what is then visible moves next. Write each prompt as one short \
phrase of at most 20 words, the movement first, naming what moves; no camera specifications, no style tags.
Answer with JSON only, no other text: {{"scenes": [{{"prompt": "first scene's prompt"}}, ...]}}."""


def check_goal(goal: str | None, image: Path | None, llm: LLMRequest | None, storyboard: Path) -> None:
    """--goal's companions, checked before anything is sent: the first image, a chat model, a storyboard path to
    write that holds no storyboard yet (an edited one is never overwritten)."""
    if goal is None:
        if image is not None:
            raise UsageError("--image is the first image of a --goal story: pass --goal too, or drop --image")
        return
    if not goal.strip():
        raise UsageError("--goal is empty: say what the film should show")
    if llm is None:
        raise UsageError("--goal needs --llm URL: a chat model writes the storyboard (or write the TOML yourself)")
    if image is None:
        raise UsageError("--goal needs --image FIRST.png: the picture the first scene starts from")
    if not image.is_file():
        raise UsageError(f"--image {image} does not exist")
    if storyboard.exists():
        raise UsageError(f"storyboard {storyboard} exists: name a new file for the chat model's storyboard")
    if not storyboard.parent.is_dir():
        raise UsageError(f"storyboard folder {storyboard.parent} does not exist")


def write_goal_storyboard(
    goal: str,
    image: Path,
    llm: LLMRequest,
    storyboard: Path,
    frame: np.ndarray,
    preset: str,
    steps: int | None = None,
) -> Storyboard:
    """Ask `llm` (resolved) for the scenes of `goal` starting from `image` (`frame`: it as the model sees it), check
    them and write them to `storyboard` (TOML, `preset` for every scene). Returns the storyboard."""
    content = [{"type": "text", "text": f"The film's goal: {goal.strip()}"}]
    content.append({"type": "image_url", "image_url": {"url": data_url(frame)}})
    answer = json_answer(ask(llm, STORY_PROMPT, content))
    scenes = answer.get("scenes") if isinstance(answer, dict) else answer
    if not isinstance(scenes, list) or not scenes:
        raise LLMError(f"the chat model's answer has no list of scenes: {quoted(json.dumps(answer))}")
    if len(scenes) > MAX_GOAL_SCENES:
        raise LLMError(f"the chat model planned {len(scenes)} scenes, more than {MAX_GOAL_SCENES}")
    prompts = [checked_prompt(s) for s in scenes]
    board = Storyboard(
        tuple(
            Scene(
                number=i + 1,
                image=image.resolve() if i == 0 else None,
                prompt=prompt,
                preset=preset,
                steps=steps,
                frames=None,
                seed=None,
                transition="continue" if i + 1 < len(prompts) else "cut",
            )
            for i, prompt in enumerate(prompts)
        ),
        bridge_preset=DEFAULT_BRIDGE_PRESET,
        fps=DEFAULT_FPS,
    )
    check_storyboard(board)
    with atomic_file(storyboard, suffix=".toml") as tmp:
        tmp.write_text(storyboard_toml(board, storyboard.parent.resolve()), encoding="utf-8")
    return board
