"""`dcrt.describe`: ranked motion prompts for an image, or for the clip between two key frames.

Offline by default: the checkpoint's own CLIP (dcrt.director.clip_space) ranks the prompt bank
(dcrt.director.bank). With an `LLMRequest`, a chat model proposes them (dcrt.director.llm), falling back to the
bank on failure where asked. The describer sees the images as the video model does: resized and centre-cropped to
the preset's size (dcrt.images), so what it describes is what gets animated.

    dcrt.describe("boat.png", "512")                       # [RankedPrompt(prompt='a boat sailing ...', ...), ...]
    dcrt.describe(["first.png", "last.png"], "512-interp")  # the clip between two key frames
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dcrt.batch import Job
from dcrt.director.bank import PromptBank, RankedPrompt, load_bank, rank_prompts
from dcrt.director.llm import DIRECTOR, LLMError, LLMRequest, propose_prompts
from dcrt.errors import UsageError
from dcrt.families.base import PresetBase
from dcrt.families.dynamicrafter.config import Preset as DynamiCrafterPreset
from dcrt.loading import BackendRequest

if TYPE_CHECKING:
    from dcrt.director.clip_space import Embedder

Log = Callable[[str], None]
MAX_TOP = 100


@dataclass(frozen=True)
class DescribeRequest:
    """How many prompts, from which bank: the command line renders these fields as options."""

    top: int = field(default=5, metadata={"help": f"how many prompts to propose, 1-{MAX_TOP}", "panel": DIRECTOR})
    bank: Path | None = field(
        default=None,
        metadata={
            "help": "a prompt bank: a JSON file shaped like dcrt/director/prompt_bank.json (default: dcrt's)",
            "panel": DIRECTOR,
        },
    )

    def check(self) -> None:
        if not 1 <= self.top <= MAX_TOP:
            raise UsageError(f"--top must be 1-{MAX_TOP}, got {self.top}")
        if self.bank is not None and not self.bank.is_file():
            raise UsageError(f"prompt bank {self.bank} does not exist or is not a file")


def takes_auto_prompt(
    preset: PresetBase, prompt: str | None, auto_prompt: bool, names: tuple[str, str] = ("--auto-prompt", "PROMPT")
) -> bool:
    """Whether a generating command chooses its prompt with `describe`: asked (--auto-prompt, which excludes a
    PROMPT), or no prompt given to a model that is conditioned on text (SVD is not: it needs none). `names`: the
    asking flag's and the prompt's names where the request comes (the jobs API's fields)."""
    flag, prompt_name = names
    if auto_prompt and prompt is not None:
        raise UsageError(f"{flag} chooses the prompt itself: leave {prompt_name} out, or drop {flag}")
    if auto_prompt:
        preset.require_family("dynamicrafter", f"{flag} (its checkpoints hold CLIP's text tower)")
    # Only DynamiCrafter's checkpoints carry the text tower the describer scores with.
    return auto_prompt or (prompt is None and isinstance(preset, DynamiCrafterPreset))


def describe(
    images,
    model: BackendRequest | str | None = None,
    *,
    top: int = 5,
    bank: PromptBank | str | Path | None = None,
    llm: LLMRequest | None = None,
    embedder: Embedder | None = None,
    log: Log | None = None,
) -> list[RankedPrompt]:
    """The `top` motion prompts for `images` (one image, or a list of one or two key frames: paths, PIL images or
    uint8 [H, W, 3] arrays), best first.

    `model`: a preset name or a `dcrt.BackendRequest` (preset, checkpoint or random_weights, device): whose CLIP
    scores and at which size the images are seen (default: the default preset's checkpoint). `embedder`: any
    `dcrt.director.clip_space.Embedder` to score with instead (one loaded once for many calls: `open_embedder`).
    `bank`: a `PromptBank` or a bank file (default: dcrt's). `llm`: ask that chat model instead; with its
    `fallback`, a failure is logged and the bank ranks."""
    log = log or (lambda message: None)
    images = list(images) if isinstance(images, (list, tuple)) else [images]
    if not 1 <= len(images) <= 2:
        raise UsageError(f"describe takes one image or two key frames, got {len(images)}")
    request = model if isinstance(model, BackendRequest) else BackendRequest(preset=model)
    DescribeRequest(top=top).check()
    request.check_names()
    llm = llm.resolved() if llm is not None else None
    bank = bank if isinstance(bank, PromptBank) else load_bank(bank)
    preset = request.preset_config()
    if embedder is None and (llm is None or llm.fallback):
        preset.require_family("dynamicrafter", "describe (its checkpoints hold CLIP's text tower)")
    frames = model_view(images, preset)
    if llm is not None:
        try:
            return propose_prompts(llm, frames, top)
        except LLMError as exc:
            if not llm.fallback:
                raise
            log(f"{exc}; using the offline prompt bank instead (--llm-fallback)")
    return rank_prompts(embedder or open_embedder(request, log), frames, bank, top)


def model_view(images: Sequence, preset: PresetBase) -> np.ndarray:
    """The images as the video model sees them: uint8 [N, height, width, 3] at the preset's size."""
    from dcrt.images import load_image

    # load_image maps p to p / 127.5 - 1 in float32; rounding inverts that exactly for 8-bit values.
    views = [np.rint((load_image(image, preset.height, preset.width)[0].numpy() + 1.0) * 127.5) for image in images]
    return np.stack(views).transpose(0, 2, 3, 1).clip(0, 255).astype(np.uint8)


def open_embedder(model: BackendRequest, log: Log | None = None) -> Embedder:
    """The joint CLIP space of `model`'s weights, on its device (default: CUDA when visible, in fp16; else the CPU
    in fp32). Reads only CLIP's tensors from the checkpoint."""
    import torch

    from dcrt.director.clip_space import load_clip_space
    from dcrt.families.state_dicts import WEIGHT_DTYPES
    from dcrt.loading import default_dtype, usable_device

    weights = model.required_weights()
    device = usable_device(model.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if log is not None:
        log(f"describing with the CLIP of {weights} on {device}")
    return load_clip_space(model.preset_config(), weights, device, WEIGHT_DTYPES[model.dtype or default_dtype(device)])


def choose_prompts(
    jobs: list[Job],
    pictures: list[list],
    model: BackendRequest,
    log: Log,
    llm: LLMRequest | None = None,
    embedder: Embedder | None = None,
) -> list[Job]:
    """`jobs` whose prompt is None given the best described prompt: of the image (animate, loop), or of each
    consecutive pair of key frames (interpolate); by the chat model when `llm` is given (its CLIP only loaded
    if it fails under --llm-fallback). Without an `embedder` kept by the caller, the CLIP space is loaded once for
    all and freed after."""
    from dcrt.director.clip_space import TextMemo

    if embedder is None and llm is None:
        embedder = TextMemo(open_embedder(model, log))
    bank, chosen = load_bank(), []
    for job, images in zip(jobs, pictures):
        if job.prompt is not None:
            chosen.append(job)
            continue
        groups = [images] if len(images) <= 2 else [images[i : i + 2] for i in range(len(images) - 1)]
        prompts = []
        for group in groups:
            best = describe(group, model, top=1, bank=bank, embedder=embedder, llm=llm, log=log)[0]
            scored = "" if best.score is None else f", score {best.score:.4f}"
            log(f"auto prompt for {job.name}: {best.prompt!r} ({best.source}{scored})")
            prompts.append(best.prompt)
        chosen.append(replace(job, prompt=prompts[0], pair_prompts=prompts if len(prompts) > 1 else None))
    return chosen
