"""Sampler parity: dcrt's pipeline against the ORIGINAL end-to-end sampling code, on the same weights.

For parity checks only; never imported by dcrt's runtime. The reference side runs the original
`scripts/evaluation/inference.py::image_guided_synthesis` (imported from $DCRT_REFERENCE_REPO, never copied) on
an original `LatentVisualDiffusion` built from the dcrt preset and loaded strictly from the dcrt checkpoint
(parity.dynamicrafter.model). Both sides get the same x_T and the same per-step noise, and we compare dcrt's final
latents (`VideoResult.latents`) with the reference's `samples` (captured at `decode_first_stage`, before decoding).

Deviations from running the original script, each needed to run it on a CPU without downloads:
* Everything parity.dynamicrafter.original lists (stubs for absent `pytorch_lightning` / `cv2` / `transformers` /
  `omegaconf`; open_clip towers built with `version=None` from a registered architecture; sequence-first
  attention restored; no random init), and `model.device` set to cpu (parity.dynamicrafter.model).
* `DDIMSampler.register_buffer` hard-codes `.to("cuda")`; it is patched to move tensors to the model's device.
* `get_first_stage_encoding` uses the posterior MEAN instead of a CPU-generator sample (docs/sampling.md §4.8,
  docs/numerics.md §7.4).
* `noise_like` (as imported into ddim.py and ddim_multiplecond.py) returns, in order, the tensors dcrt's
  `NoiseSource` draws after x_T: `torch.randn(shape, generator=torch.Generator().manual_seed(seed))`, one per
  step. x_T itself is passed through `image_guided_synthesis(**kwargs)` to `DDIMSampler.sample(x_T=...)`.
* `decode_first_stage` records the latents and skips the VAE decode (only the latents are compared), except
  with ToonCrafter's dual-ref decoder, whose two-pass decode runs: its frames are compared too (as uint8).
* No CUDA autocast: the original runs fp32 on a CPU.
"""

from __future__ import annotations

import contextlib
import gc
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dcrt.images import to_uint8_frames
from parity.dynamicrafter.components import diff, load_checkpoint_state_dict
from parity.dynamicrafter.model import ReferenceModel, build_reference_model

PROMPT = "a corgi running on the beach at sunset, cinematic"


# ------------------------------------------------------------------------------------------------
# One case on both sides


@dataclass(frozen=True)
class SamplerCase:
    mode: str = "animate"  # animate | interpolate | loop
    multi_cond: bool = False  # three-way guidance: cfg_img on both sides, multiple_cond_cfg=True on the original
    eta: float = 0.0
    steps: int = 5
    guidance_scale: float = 7.5
    cfg_img: float = 2.0  # used only with multi_cond

    @property
    def label(self) -> str:
        return f"{self.mode}{'+mc' if self.multi_cond else ''}@eta={self.eta:g}"


@dataclass
class SamplerDiff:
    rel: float  # final latents ||dcrt - ref|| / ||ref||
    max_abs: float
    shape: tuple[int, ...]
    per_step: list[float]  # rel error of the latent entering each step (step 0 = x_T), then the final one
    conditioning: dict[str, float]  # context per branch, c_concat, fs
    model_outputs: list[float]  # rel error of each UNet branch output, in the original's call order
    inputs: dict = field(default_factory=dict)
    frame_levels: int | None = None  # dual-ref decoder: largest uint8 difference of the decoded frames


def case_inputs(preset, case: SamplerCase, height: int, width: int, seed: int = 0):
    """Conditioning images in [-1, 1] (1 or 2), x_T, and the seed of the per-step noise."""
    g = torch.Generator().manual_seed(seed)
    n = 2 if case.mode == "interpolate" else 1
    images = [torch.rand(1, 3, height, width, generator=g) * 2 - 1 for _ in range(n)]
    x_T = torch.randn(
        1,
        preset.vae.z_channels,
        preset.frames,
        height // preset.vae.downscale,
        width // preset.vae.downscale,
        generator=g,
    )
    return images, x_T, seed + 1


def step_noises(seed: int, shape: tuple[int, ...], count: int) -> list[torch.Tensor]:
    """What dcrt's NoiseSource(seed) draws after x_T when x_T is supplied: `count` tensors from its start."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g, dtype=torch.float32) for _ in range(count)]


@contextlib.contextmanager
def _patched(obj, name, value):
    had, saved = name in vars(obj), vars(obj).get(name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        if had:
            setattr(obj, name, saved)
        else:
            delattr(obj, name)


@torch.no_grad()
def run_reference(
    rm: ReferenceModel,
    case: SamplerCase,
    images,
    prompt: str,
    x_T: torch.Tensor,
    noise_seed: int,
    fs: int,
    spacing: str,
    rescale: float,
):
    """Original image_guided_synthesis; returns (final latents, [(x, cond, output) per UNet call])."""
    model, ref = rm.model, rm.ref
    frames = x_T.shape[2]
    if case.mode == "interpolate":  # load_data_prompts(interp=True): A repeated T/2 times, then B
        videos = torch.cat(
            [
                images[0].unsqueeze(2).repeat(1, 1, frames // 2, 1, 1),
                images[1].unsqueeze(2).repeat(1, 1, frames // 2, 1, 1),
            ],
            dim=2,
        )
    else:
        videos = images[0].unsqueeze(2).repeat(1, 1, frames, 1, 1)
    queue = step_noises(noise_seed, tuple(x_T.shape), case.steps)
    queue.reverse()

    def noise_like(shape, device, repeat=False):
        assert not repeat and tuple(shape) == tuple(x_T.shape), (shape, repeat)
        return queue.pop().to(device)

    def register_buffer(self, name, attr):  # the original hard-codes .to("cuda")
        if isinstance(attr, torch.Tensor):
            attr = attr.to(self.model.device)
        setattr(self, name, attr)

    calls, captured = [], {}
    apply_model = model.apply_model

    def recording_apply_model(x, t, cond, **kwargs):
        out = apply_model(x, t, cond, **kwargs)
        calls.append(
            (
                x.clone(),
                int(t[0]),
                cond["c_crossattn"][0].clone(),
                cond["c_concat"][0].clone(),
                kwargs.get("fs"),
                out.clone(),
            )
        )
        return out

    def first_stage_mean(encoder_posterior, noise=None):
        return model.scale_factor * encoder_posterior.mode()

    decode = model.decode_first_stage

    def capture_decode(z, **kwargs):
        captured.setdefault("samples", z.clone())  # the dual-ref decode's second pass sees fewer frames
        if "ref_context" in kwargs:
            captured["decoded"] = True
            return decode(z, **kwargs)
        b, _, t, h, w = z.shape
        return torch.zeros(b, 3, t, h * 8, w * 8)

    with contextlib.ExitStack() as stack:
        for mod in (ref.ddim, ref.ddim_multicond):
            stack.enter_context(_patched(mod, "noise_like", noise_like))
            stack.enter_context(_patched(mod.DDIMSampler, "register_buffer", register_buffer))
        stack.enter_context(_patched(model, "apply_model", recording_apply_model))
        stack.enter_context(_patched(model, "get_first_stage_encoding", first_stage_mean))
        stack.enter_context(_patched(model, "decode_first_stage", capture_decode))
        stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
        videos = ref.inference.image_guided_synthesis(
            model,
            [prompt],
            videos,
            list(x_T.shape),
            n_samples=1,
            ddim_steps=case.steps,
            ddim_eta=case.eta,
            unconditional_guidance_scale=case.guidance_scale,
            cfg_img=case.cfg_img if case.multi_cond else None,
            fs=fs,
            text_input=True,
            multiple_cond_cfg=case.multi_cond,
            loop=case.mode == "loop",
            interp=case.mode == "interpolate",
            timestep_spacing=spacing,
            guidance_rescale=rescale,
            x_T=x_T.clone(),
        )
    assert not queue, f"the original drew {case.steps - len(queue)} of {case.steps} per-step noises"
    frames = videos[0, 0].transpose(0, 1) if captured.get("decoded") else None
    return captured["samples"], calls, frames  # frames: [T, 3, H, W], or None where the decode was skipped


@torch.no_grad()
def run_dcrt(
    model,
    case: SamplerCase,
    images,
    prompt: str,
    x_T: torch.Tensor,
    noise_seed: int,
    fs: int,
    spacing: str,
    rescale: float,
):
    """dcrt's public API; returns (result.latents, [(x, t, context, concat, fs, output) per batched UNet call])."""
    from dcrt.api import animate, interpolate, loop
    from dcrt.families.dynamicrafter.pipeline import pipeline_for

    pipe = pipeline_for(model)
    calls = []
    unet = pipe.backend.unet

    def recording_unet(x, t, context, fs_):
        out = unet(x, t, context, fs_)
        calls.append((x.clone(), t.clone(), context.clone(), fs_.clone(), out.clone()))
        return out

    _, _, _, h, w = x_T.shape
    kwargs = dict(
        steps=case.steps,
        guidance_scale=case.guidance_scale,
        eta=case.eta,
        frame_stride=fs,
        guidance_rescale=rescale,
        timestep_spacing=spacing,
        image_guidance_scale=case.cfg_img if case.multi_cond else None,
        seed=noise_seed,
        x_T=x_T.clone(),
        height=h * model.preset.vae.downscale,
        width=w * model.preset.vae.downscale,
    )
    with _patched(pipe.backend, "unet", recording_unet):
        if case.mode == "animate":
            result = animate(model, images[0], prompt, **kwargs)
        elif case.mode == "interpolate":
            result = interpolate(model, images[0], images[1], prompt, **kwargs)
        else:
            result = loop(model, images[0], prompt, **kwargs)
    return result, calls


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return diff(a, b).rel


def compare_case(
    model, rm: ReferenceModel, case: SamplerCase, height: int, width: int, prompt: str = PROMPT, seed: int = 0
) -> SamplerDiff:
    """Run one case on both sides (preset defaults for fs, spacing and rescale) and diff everything."""
    preset = model.preset
    d = preset.sampling
    images, x_T, noise_seed = case_inputs(preset, case, height, width, seed)
    common = (images, prompt, x_T, noise_seed, d.frame_stride, d.timestep_spacing, d.guidance_rescale)
    ref_latents, ref_calls, ref_frames = run_reference(rm, case, *common)
    result, dcrt_calls = run_dcrt(model, case, *common)
    out_latents = result.latents
    frame_levels = None
    if ref_frames is not None:
        ref_frames = to_uint8_frames(ref_frames)[: len(result.frames)]  # loop: dcrt drops the last frame
        frame_levels = int(np.abs(ref_frames.astype(int) - result.frames.astype(int)).max())

    branches = 3 if case.multi_cond else 2
    zc = preset.vae.z_channels
    if len(dcrt_calls) * branches != len(ref_calls):
        raise AssertionError(f"UNet calls: dcrt {len(dcrt_calls)} x {branches} branches, original {len(ref_calls)}")
    per_step, outputs, cond = [], [], {}
    for k, (x, t, context, fs, out) in enumerate(dcrt_calls):
        ref_step = ref_calls[k * branches : (k + 1) * branches]
        per_step.append(_rel(x[:1, :zc], ref_step[0][0]))
        if int(t[0]) != ref_step[0][1]:
            raise AssertionError(f"step {k}: timestep dcrt {int(t[0])} vs original {ref_step[0][1]}")
        for j, (_, _, c_ref, concat_ref, fs_ref, out_ref) in enumerate(ref_step):
            outputs.append(_rel(out[j : j + 1], out_ref))
            if k == 0:
                cond[f"context[{('cond', 'uncond', 'uncond_txt')[j]}]"] = _rel(context[j : j + 1], c_ref)
                cond.setdefault("c_concat", _rel(x[j : j + 1, zc:], concat_ref))
                cond.setdefault("fs", float(int(fs[j]) != int(fs_ref[0])))
    per_step.append(_rel(out_latents, ref_latents))
    d_final = diff(out_latents, ref_latents)
    return SamplerDiff(
        d_final.rel,
        d_final.max_abs,
        d_final.shape,
        per_step,
        cond,
        outputs,
        inputs=dict(
            height=height,
            width=width,
            fs=d.frame_stride,
            spacing=d.timestep_spacing,
            guidance_rescale=d.guidance_rescale,
            guidance_scale=case.guidance_scale,
            cfg_img=case.cfg_img if case.multi_cond else None,
            steps=case.steps,
        ),
        frame_levels=frame_levels,
    )


def compare_sampling(
    model, state_dict: dict, cases, height: int, width: int, repo: Path | None = None, on_result=None
) -> dict[SamplerCase, SamplerDiff]:
    """Build the original model once for `model.preset`, run every case, free it."""
    rm = build_reference_model(model.preset, state_dict, repo)
    bad = {k: v for k, v in rm.schedule_check.items() if not v < 1e-6}
    if bad:
        raise AssertionError(f"checkpoint schedule buffers differ from the original's own: {bad}")
    results = {}
    try:
        for case in cases:
            results[case] = compare_case(model, rm, case, height, width)
            if on_result is not None:
                on_result(case, results[case])
    finally:
        del rm
        gc.collect()
    return results


__all__ = ["SamplerCase", "SamplerDiff", "all_cases", "compare_case", "compare_sampling", "prepare"]


def prepare(weights: str, preset: str, workdir: Path, seed: int = 0):
    """(dcrt model, state dict) for random `weights` viewed as `preset` (e.g. 512 weights as 512-interp).

    The checkpoint is written once per `weights`; dcrt and the original both alias its memory map, so a full
    preset costs its 10.4 GB once (page cache) rather than twice (anonymous memory).
    """
    from dcrt.families.dynamicrafter.checkpoint import load_model, random_model, save_checkpoint

    path = Path(workdir) / f"{weights}.ckpt"
    if not path.exists():
        model = random_model(weights, seed=seed)
        save_checkpoint(model, path)
        del model
        gc.collect()
    return load_model(path, preset=preset), load_checkpoint_state_dict(path)


def all_cases(modes=("animate", "interpolate", "loop"), steps: int = 5) -> list[SamplerCase]:
    return [SamplerCase(mode, mc, eta, steps) for mode in modes for mc in (False, True) for eta in (0.0, 1.0)]
