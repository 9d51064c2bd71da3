"""The correction loop: generate, score, adjust, until the scores meet the conditions (`--until
"motion>=4,consistency>=0.9"`) or the tries run out; then the best try. docs/metrics.md states the rule table and
how the best try is chosen.

`correct` is a function over a `generate(settings) -> frames` callable and a `score(frames, try) -> Scores` one, so
that it runs with any pipeline (a scripted fake one in the tests). What to change between tries is a `Proposer`:
`RuleProposer` is the offline rule table; a chat model proposing settings from the scores is another one
(dcrt.director.llm), passed as `propose`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from dcrt.director.score import Scores, VideoScorer, scores_path, write_scores
from dcrt.errors import UsageError
from dcrt.families.base import SEED_RANGE

if TYPE_CHECKING:
    import numpy as np

    from dcrt.families.base import PresetBase
    from dcrt.weights import Weights

GUIDANCE_RANGE = (1.0, 15.0)
GUIDANCE_STEP = 1.5
ETA_STEP = 0.5
STRIDE_FACTOR = 1.5  # the 256 model's frame stride x this for more motion; the others' fps x 1 / this
# The prompt's motion phrase: at most one, replaced (never piled up) as the loop moves back and forth.
MOTION_PHRASES = {"more": "fast dynamic motion", "less": "slow gentle motion"}
OPERATORS = (">=", "<=")
DEFAULT_TRIES = 3
SEED_COUNT = SEED_RANGE[1] + 1  # the seed after the last one is 0
SAMPLING_PANEL = "Sampling"  # where --help lists --until and --tries: beside the settings they move


@dataclass(frozen=True)
class CorrectionRequest:
    """`animate --until ... --tries N` (rendered as options by dcrt.cli.options.takes)."""

    until: str | None = field(
        default=None,
        metadata={
            "help": 'generate again until the scores meet these conditions, e.g. "motion>=4,consistency>=0.9" '
            "(metrics and rules: docs/metrics.md); each try is kept as <out>.try<i>.<ext> with its scores, the best "
            "is written to the output",
            "panel": SAMPLING_PANEL,
        },
    )
    tries: int = field(
        default=DEFAULT_TRIES, metadata={"help": "at most this many tries with --until", "panel": SAMPLING_PANEL}
    )

    def checked(
        self, preset: PresetBase, weights: Weights | None, extend: bool, targets: Sequence[Path], fmt: str
    ) -> tuple[Condition, ...]:
        """`conditions`, and what a run with them needs, checked before any model loads: a DynamiCrafter preset,
        one clip, a checkpoint's CLIP for a CLIP metric, and room for every try's video beside each target."""
        from dcrt.director.score import CLIP_METRICS
        from dcrt.video import check_output_path

        conditions = self.conditions()
        if not conditions:
            return ()
        preset.require_family("dynamicrafter", "--until (its rules move DynamiCrafter's sampling settings)")
        if extend:
            raise UsageError("--until corrects one clip: it does not combine with --extend")
        needs_clip = [str(c) for c in conditions if c.metric in CLIP_METRICS]
        if needs_clip and weights is None:
            raise UsageError(f"--until {', '.join(needs_clip)} needs the checkpoint's CLIP: give --ckpt PATH")
        for target in targets:
            for number in range(1, self.tries + 1):
                check_output_path(try_path(target, number), fmt)
        return conditions

    def conditions(self) -> tuple[Condition, ...]:
        """The parsed --until (empty without it); raises UsageError for a bad one or a --tries without it."""
        if self.until is None:
            if self.tries != DEFAULT_TRIES:
                raise UsageError("--tries is the number of tries of --until: give --until too")
            return ()
        if self.tries < 1:
            raise UsageError(f"--tries must be at least 1, got {self.tries}")
        return parse_until(self.until)


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


@dataclass(frozen=True)
class Attempt:
    """One try: its number (from 1), settings, scores and total shortfall (0: every condition met)."""

    number: int
    settings: Settings
    scores: Scores
    shortfall: float

    @property
    def met(self) -> bool:
        return self.shortfall == 0


def correct(
    generate: Callable[[Settings], np.ndarray],
    score: Callable[[np.ndarray, int], Scores],
    start: Settings,
    conditions: Sequence[Condition],
    tries: int,
    propose: Proposer,
    on_attempt: Callable[[Attempt], None] | None = None,
) -> list[Attempt]:
    """Try `start`, then what `propose` makes of each try's scores, until a try meets every condition or `tries`
    are made. `score(frames, number)` scores (and may keep) a try's frames. A proposal already tried gets the
    next seed, so no try repeats another."""
    attempts: list[Attempt] = []
    settings = start
    for number in range(1, tries + 1):
        scores = score(generate(settings), number)
        attempt = Attempt(number, settings, scores, sum(c.shortfall(scores) for c in conditions))
        attempts.append(attempt)
        if on_attempt is not None:
            on_attempt(attempt)
        if attempt.met or number == tries:  # no proposal after the last try: a chat model's would be paid for
            break
        settings = propose(settings, scores, conditions)
        tried = {a.settings for a in attempts}
        while settings in tried:
            settings = new_seed(settings)
    return attempts


def best(attempts: Sequence[Attempt]) -> Attempt:
    """A try meeting every condition, else the smallest shortfall; a try with black or NaN frames loses to any
    without; ties go to the earlier try."""
    return min(attempts, key=lambda a: (not a.scores.healthy(), a.shortfall, a.number))


def format_tries(attempts: Sequence[Attempt], conditions: Sequence[Condition]) -> str:
    """A table of the tries: each condition's metric, the settings, whether all conditions were met; the best
    marked with *."""
    chosen = best(attempts).number
    header = ["try", *(c.metric for c in conditions), "met", "guidance", "eta", "frame_stride", "seed", "prompt"]
    rows = [header]
    for a in attempts:
        shown = [_shown(a.scores.value(c.metric)) for c in conditions]
        s = a.settings
        rows.append(
            [
                f"{a.number}{' *' if a.number == chosen else ''}",
                *shown,
                "yes" if a.met else "no",
                f"{s.guidance_scale:g}",
                f"{s.eta:g}",
                str(s.frame_stride),
                str(s.seed),
                s.prompt,
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    return "\n".join("  ".join([*(c.ljust(w) for c, w in zip(row, widths)), row[-1]]) for row in rows)


def _shown(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def try_path(target: Path, number: int) -> Path:
    """Where try `number` of a video bound for `target` goes: boat_animate.try1.mp4 (a png folder: .try1)."""
    return target.with_name(f"{target.stem}.try{number}{target.suffix}")


def animate_until(
    backend,
    image,
    prompt: str,
    conditions: Sequence[Condition],
    tries: int,
    target: Path,
    *,
    sampling: dict[str, object],
    save: Callable[[np.ndarray, Path], Path],
    scorer: VideoScorer,
    image_path: Path,
    progress: Callable[[], AbstractContextManager] = nullcontext,
    propose: Proposer | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> list[Attempt]:
    """`dcrt.animate` of `image` on `backend` (a DynamiCrafter one) corrected by `correct`: each try written by
    `save` to `try_path(target, n)` and scored there (against `image_path` and the user's `prompt`: the motion
    phrase steers, it is not what the video should show); the best copied to `target` with its scores.
    `sampling`: dcrt.api's keywords, whose guidance, eta, frame stride and seed are the first try's. `progress()`:
    a context giving each try's step callback. `propose` defaults to the rule table; `log` hears each try's
    outcome."""
    from dcrt.api import animate
    from dcrt.families.dynamicrafter.options import SamplingRequest, resolve_options

    preset = backend.preset
    opts = resolve_options(preset, "animate", SamplingRequest(**sampling))
    start = Settings(prompt, opts.guidance_scale, opts.eta, opts.frame_stride, opts.seed)

    def generate(settings: Settings) -> np.ndarray:
        with progress() as on_step:
            return animate(backend, image, settings.prompt, on_step=on_step, **(sampling | settings.sampling())).frames

    def score(frames: np.ndarray, number: int) -> Scores:
        video = save(frames, try_path(target, number))
        scores = scorer.score(video, [image_path], prompt)
        write_scores(scores, video)
        return scores

    def report(attempt: Attempt) -> None:
        measured = ", ".join(f"{c.metric} {_shown(attempt.scores.value(c.metric))}" for c in conditions)
        outcome = "met" if attempt.met else "not met"
        log(f"try {attempt.number} of {tries}: {measured}: {outcome} ({try_path(target, attempt.number)})")

    limits = Limits.of(preset)
    proposer = propose or RuleProposer(limits)

    def clamped(settings: Settings, scores: Scores, conditions: Sequence[Condition]) -> Settings:
        return limits.clamp(proposer(settings, scores, conditions))

    attempts = correct(generate, score, start, conditions, tries, clamped, report)
    chosen = try_path(target, best(attempts).number)
    _copy(chosen, target)
    _copy(scores_path(chosen), scores_path(target))
    return attempts


def _copy(source: Path, target: Path) -> None:
    """A file, or a png folder, copied whole to `target` (written aside and renamed, as every output)."""
    import shutil

    from dcrt.atomic import atomic_dir, atomic_file

    if source.is_dir():
        with atomic_dir(target) as tmp:
            shutil.copytree(source, tmp, dirs_exist_ok=True)
    else:
        with atomic_file(target, suffix=target.suffix) as tmp:
            shutil.copyfile(source, tmp)
