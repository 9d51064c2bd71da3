"""The correction loop's rule table: what `--until` conditions are (`Condition`, `parse_until`), what the loop may
change between tries (`Settings`, within a preset's `Limits`), and how the rules change it (`RULES`, applied by
`RuleProposer`). docs/metrics.md states the table; dcrt.director.correct runs the loop.

A `Proposer` is anything that turns a try's settings and scores into the next try's: the rule table here, or a chat
model (dcrt.director.llm) behind the same signature.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Protocol

from dcrt.director.score import Scores
from dcrt.errors import UsageError
from dcrt.families.base import SEED_RANGE

if TYPE_CHECKING:
    from dcrt.families.base import PresetBase

GUIDANCE_RANGE = (1.0, 15.0)
GUIDANCE_STEP = 1.5
ETA_STEP = 0.5
STRIDE_FACTOR = 1.5  # the 256 model's frame stride x this for more motion; the others' fps x 1 / this
# The prompt's motion phrase: at most one, replaced (never piled up) as the loop moves back and forth.
MOTION_PHRASES = {"more": "fast dynamic motion", "less": "slow gentle motion"}
OPERATORS = (">=", "<=")
SEED_COUNT = SEED_RANGE[1] + 1  # the seed after the last one is 0


@dataclass(frozen=True)
class Condition:
    """metric >= bound (`at_least`) or metric <= bound."""

    metric: str
    bound: float
    at_least: bool

    def __str__(self) -> str:
        return f"{self.metric}{OPERATORS[0] if self.at_least else OPERATORS[1]}{self.bound:g}"

    def shortfall(self, scores: Scores) -> float:
        """0 when met, else the distance to the bound over max(|bound|, 1); a metric that could not be computed
        falls short by infinity."""
        value = scores.value(self.metric)
        if value is None:
            return math.inf
        gap = self.bound - value if self.at_least else value - self.bound
        return max(gap, 0.0) / max(abs(self.bound), 1.0)


def parse_until(text: str) -> tuple[Condition, ...]:
    """'motion>=4,consistency>=0.9' -> Conditions; one line naming what is wrong otherwise."""
    conditions = []
    for item in (part.strip() for part in text.split(",")):
        operator = next((op for op in OPERATORS if op in item), None)
        if operator is None:
            raise UsageError(f"--until: {item!r} is not METRIC>=NUMBER or METRIC<=NUMBER")
        metric, _, number = (part.strip() for part in item.partition(operator))
        if metric not in RULES:
            raise UsageError(f"--until: unknown metric {metric!r}; choose from {', '.join(RULES)}")
        try:
            bound = float(number)
        except ValueError:
            raise UsageError(f"--until: {number!r} in {item!r} is not a number") from None
        if not math.isfinite(bound):
            raise UsageError(f"--until: the bound of {item!r} must be a finite number")
        at_least = operator == ">="
        if RULES[metric][0 if at_least else 1] is None:
            other = OPERATORS[1] if at_least else OPERATORS[0]
            way = "raises" if at_least else "lowers"
            raise UsageError(f"--until: no rule {way} {metric}; bound it the other way, {metric}{other}NUMBER")
        conditions.append(Condition(metric, bound, at_least))
    return tuple(conditions)


@dataclass(frozen=True)
class Settings:
    """What the loop changes between tries (the rest of the run is fixed)."""

    prompt: str
    guidance_scale: float
    eta: float
    frame_stride: int
    seed: int

    def sampling(self) -> dict[str, object]:
        """As dcrt.api's sampling keywords."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "prompt"}


@dataclass(frozen=True)
class Limits:
    """What bounds the moves for one preset: its frame-stride range and what the value means."""

    frame_stride_range: tuple[int, int]
    frame_stride_is_fps: bool

    @classmethod
    def of(cls, preset: PresetBase) -> Limits:
        return cls(preset.sampling.frame_stride_range, preset.sampling.frame_stride_is_fps)

    def note(self) -> str:
        """What frame_stride means for this preset, in words (for a chat model proposing settings)."""
        lo, hi = self.frame_stride_range
        if self.frame_stride_is_fps:
            return f"frame_stride is the frames-per-second conditioning, {lo}-{hi}: a larger value gives less motion"
        return f"frame_stride is the sampling stride of the training clips, {lo}-{hi}: a larger value gives more motion"

    def clamp(self, settings: Settings) -> Settings:
        """`settings` brought into what a run takes (a proposal, a chat model's included, never fails the run):
        the frame stride into the preset's range, guidance into GUIDANCE_RANGE, eta >= 0, the seed into its range."""
        lo, hi = self.frame_stride_range
        return replace(
            settings,
            frame_stride=min(max(int(settings.frame_stride), lo), hi),
            guidance_scale=min(max(float(settings.guidance_scale), GUIDANCE_RANGE[0]), GUIDANCE_RANGE[1]),
            eta=max(float(settings.eta), 0.0),
            seed=int(settings.seed) % SEED_COUNT,
        )


Move = Callable[[Settings, Limits], Settings]


def _stride_towards(settings: Settings, limits: Limits, more: bool) -> Settings:
    """frame_stride one step towards more (or less) motion: a stride grows with motion, an fps shrinks (the
    proposer clamps it into the preset's range)."""
    grow = more != limits.frame_stride_is_fps
    value = settings.frame_stride
    value = max(math.ceil(value * STRIDE_FACTOR), value + 1) if grow else min(int(value / STRIDE_FACTOR), value - 1)
    return replace(settings, frame_stride=value)


def _with_phrase(prompt: str, phrase: str) -> str:
    for old in MOTION_PHRASES.values():
        prompt = prompt.removesuffix(f", {old}")
    return f"{prompt}, {phrase}"


def more_motion(settings: Settings, limits: Limits) -> Settings:
    moved = _stride_towards(settings, limits, more=True)
    return replace(moved, prompt=_with_phrase(settings.prompt, MOTION_PHRASES["more"]))


def less_motion(settings: Settings, limits: Limits) -> Settings:
    moved = _stride_towards(settings, limits, more=False)
    return replace(moved, prompt=_with_phrase(settings.prompt, MOTION_PHRASES["less"]))


def guidance_up(settings: Settings, limits: Limits) -> Settings:
    return replace(settings, guidance_scale=settings.guidance_scale + GUIDANCE_STEP)


def guidance_down(settings: Settings, limits: Limits) -> Settings:
    return replace(settings, guidance_scale=settings.guidance_scale - GUIDANCE_STEP)


def eta_down(settings: Settings, limits: Limits) -> Settings:
    return replace(settings, eta=settings.eta - ETA_STEP)


def new_seed(settings: Settings, limits: Limits | None = None) -> Settings:
    return replace(settings, seed=(settings.seed + 1) % SEED_COUNT)


# metric -> (moves when it is below its bound, moves when it is above); None: no rule that way. docs/metrics.md.
_MORE, _LESS = (more_motion,), (less_motion,)
RULES: dict[str, tuple[tuple[Move, ...] | None, tuple[Move, ...] | None]] = {
    "motion": (_MORE, _LESS),
    "motion_relative": (_MORE, _LESS),
    "dynamic_degree": (_MORE, _LESS),
    "consistency": ((less_motion, guidance_down), _MORE),
    "consistency_first": ((less_motion, guidance_down), _MORE),
    "image_similarity": ((less_motion, guidance_down), _MORE),
    "image_psnr": ((less_motion, guidance_down), _MORE),
    "prompt_score": ((guidance_up,), (guidance_down,)),
    "flicker": (None, (eta_down, guidance_down)),
    "frozen_frames": (None, _MORE),
    "black_frames": (None, (guidance_down, new_seed)),
    "nan_frames": (None, (guidance_down, new_seed)),
}


class Proposer(Protocol):
    """The next try's settings from the last try's and its scores (`conditions`: what the scores must meet)."""

    def __call__(self, settings: Settings, scores: Scores, conditions: Sequence[Condition]) -> Settings: ...


# Moves that undo each other: within one proposal the first condition given keeps its move, a later one's opposite
# is skipped (motion>=4,consistency>=0.9 both unmet: more motion, and the guidance down consistency adds).
OPPOSITES: dict[Move, Move] = {
    more_motion: less_motion,
    less_motion: more_motion,
    guidance_up: guidance_down,
    guidance_down: guidance_up,
}


@dataclass(frozen=True)
class RuleProposer:
    """The rule table: every unmet condition applies its row's moves, in the order the conditions were given
    (a move undoing an earlier condition's is skipped), each move's result clamped into the limits."""

    limits: Limits

    def __call__(self, settings: Settings, scores: Scores, conditions: Sequence[Condition]) -> Settings:
        applied: set[Move] = set()
        for condition in conditions:
            if condition.shortfall(scores) > 0:
                for move in RULES[condition.metric][0 if condition.at_least else 1] or ():
                    if OPPOSITES.get(move) not in applied:
                        settings = self.limits.clamp(move(settings, self.limits))
                        applied.add(move)
        return settings
