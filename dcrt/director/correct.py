"""The correction loop: generate, score, adjust, until the scores meet the conditions (`--until
"motion>=4,consistency>=0.9"`) or the tries run out; then the best try. docs/metrics.md states the rule table
(dcrt.director.rules) and how the best try is chosen.

`correct` is a function over a `generate(settings) -> frames` callable and a `score(frames, try) -> Scores` one, so
that it runs with any pipeline (a scripted fake one in the tests). What to change between tries is a `Proposer`:
`RuleProposer` is the offline rule table; a chat model proposing settings from the scores is another one
(dcrt.director.llm), passed as `propose`. `animate_until` is the loop over `dcrt.animate` that `animate --until` runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dcrt.director.rules import Condition, Limits, Proposer, RuleProposer, Settings, new_seed, parse_until
from dcrt.director.score import Scores, VideoScorer, scores_path, write_scores
from dcrt.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

    from dcrt.director.llm import LLMRequest
    from dcrt.families.base import PresetBase
    from dcrt.weights import Weights

DEFAULT_TRIES = 3
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
    llm: LLMRequest | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> list[Attempt]:
    """`dcrt.animate` of `image` on `backend` (a DynamiCrafter one) corrected by `correct`: each try written by
    `save` to `try_path(target, n)` and scored there (against `image_path` and the user's `prompt`: the motion
    phrase steers, it is not what the video should show); the best copied to `target` with its scores.
    `sampling`: dcrt.api's keywords, whose guidance, eta, frame stride and seed are the first try's. `progress()`:
    a context giving each try's step callback. The next try's settings: the rule table's, or with `llm` (a resolved
    request) the chat model's (`LLMProposer`); `log` hears each try's outcome."""
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
    proposer = RuleProposer(limits) if llm is None else LLMProposer(llm, limits, log)

    def clamped(settings: Settings, scores: Scores, conditions: Sequence[Condition]) -> Settings:
        return limits.clamp(proposer(settings, scores, conditions))

    attempts = correct(generate, score, start, conditions, tries, clamped, report)
    chosen = try_path(target, best(attempts).number)
    _copy(chosen, target)
    _copy(scores_path(chosen), scores_path(target))
    return attempts


@dataclass
class LLMProposer:
    """A chat model's proposal (`--llm`: dcrt.director.llm.propose_settings) as a `Proposer`: it sees the last try's
    settings and measured scores, the --until conditions and what frame_stride means for the preset. A failure is
    one line (LLMError), or with --llm-fallback a notice, then the rule table for this and every later try."""

    request: LLMRequest
    limits: Limits
    log: Callable[[str], None] = lambda message: None
    failed: bool = False

    def __call__(self, settings: Settings, scores: Scores, conditions: Sequence[Condition]) -> Settings:
        from dcrt.director.llm import LLMError, propose_settings

        if not self.failed:
            measured = {k: v for k, v in asdict(scores).items() if isinstance(v, float) and k != "version"}
            try:
                proposed = propose_settings(
                    self.request, asdict(settings), measured, [str(c) for c in conditions], [self.limits.note()]
                )
                return Settings(**proposed)
            except LLMError as exc:
                if not self.request.fallback:
                    raise
                self.failed = True
                self.log(f"{exc}; the rule table proposes the next tries instead (--llm-fallback)")
        return RuleProposer(self.limits)(settings, scores, conditions)


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
