"""animate / interpolate / loop: inputs -> conditioning -> DDIM sampler -> frames.

Data flow: docs/models.md §3.1; preprocessing, conditioning and decoding: docs/sampling.md §4.1, 4.2, 4.9.

Compared with the original, the same numbers with none of its waste: the unconditional context is
computed once per loaded model, the guidance branches run as one batched UNet call, the conditioning
image is VAE-encoded once (interp / loop: the two key frames), and the loop never syncs with the host.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import torch

from dcrt.errors import UsageError
from dcrt.families.common import NoiseSource, StageTimer, StepCallback, VideoResult, untimed
from dcrt.families.dynamicrafter.backend import Backend
from dcrt.families.dynamicrafter.clip_decode import decode_clip
from dcrt.families.dynamicrafter.options import SamplingOptions
from dcrt.families.dynamicrafter.sampler import Denoiser, Guidance, SamplerInputs, WindowedDenoiser, sample
from dcrt.families.dynamicrafter.schedule import DDIMSchedule, build_ddim_schedule
from dcrt.families.dynamicrafter.torch_backend import TorchBackend
from dcrt.families.dynamicrafter.windows import TemporalWindows
from dcrt.images import load_image, to_uint8_frames
from dcrt.models.autoencoder import References
from dcrt.models.clip import clip_pixels
from dcrt.models.dynamicrafter import DynamiCrafter
from dcrt.models.tokenizer import Tokenizer
from dcrt.runners import kernels
from dcrt.runners.ddim import GraphRunner
from dcrt.runners.kernels import StepKernels


def guidance_for(opts: SamplingOptions) -> Guidance:
    # Three-way guidance only when asked for and when it changes anything (a scale of 1 crashes the original).
    image_scale = opts.image_guidance_scale if opts.image_guidance_scale not in (None, 1.0) else None
    return Guidance(
        guidance_scale=opts.guidance_scale, image_guidance_scale=image_scale, guidance_rescale=opts.guidance_rescale
    )


class Pipeline:
    """Conditioning, sampling and decoding over one backend. Caches what does not depend on the input."""

    def __init__(
        self,
        backend: Backend,
        cache_unconditional: bool = True,
        cuda_graph: bool | None = None,
        fused_kernels: bool | StepKernels | None = None,
    ):
        """`cuda_graph`: sample with the graph runner, captured on CUDA (None: on CUDA when the backend is
        capturable), else the eager loop. `fused_kernels`: the runner's guidance combine and DDIM update as
        dcrt's CUDA kernels (None: whenever the runner runs on CUDA), or the `StepKernels` to use instead
        (`dcrt.runners.kernels.ReferenceKernels` runs the fused path's wiring on a CPU)."""
        on_cuda = backend.device.type == "cuda"
        self.backend = backend
        self.cache_unconditional = cache_unconditional
        self.cuda_graph = on_cuda and backend.capturable if cuda_graph is None else cuda_graph
        self.capture = self.cuda_graph and on_cuda  # on a CPU the runner's step body runs uncaptured
        if self.capture and not backend.capturable:
            raise UsageError(
                f"the {type(backend).__name__} synchronises inside its calls, so it cannot run in a CUDA graph: "
                "use cuda_graph=False"
            )
        if fused_kernels is None:
            fused_kernels = self.capture
        if fused_kernels is not False and not self.cuda_graph:
            raise UsageError("the fused kernels run inside the graph runner: they need cuda_graph=True")
        if fused_kernels is True:
            fused_kernels = kernels.load_kernels(backend.device)
        self.kernels: StepKernels | None = fused_kernels or None
        self._runners: dict[tuple, GraphRunner] = {}
        self.preset = backend.preset
        self.tokenizer = Tokenizer(self.preset.text.context_length)
        self._unconditional: tuple[torch.Tensor, torch.Tensor] | None = None
        self._schedules: dict[tuple[int, str, float], DDIMSchedule] = {}

    def encode_prompt(self, prompt: str) -> torch.Tensor:
        limit = self.tokenizer.context_length
        if self.tokenizer.token_count(prompt) > limit:
            warnings.warn(f"prompt is longer than {limit} CLIP tokens; it is truncated, as CLIP does", stacklevel=3)
        return self.backend.encode_text(self.tokenizer([prompt]).to(self.backend.device))

    def unconditional(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(empty-prompt text context [1, 77, C], mid-grey image context [1, 256, C]), computed once."""
        if self._unconditional is None or not self.cache_unconditional:
            cfg = self.preset.image
            # 0 in [-1, 1]: a constant stays constant through the resize
            grey = torch.zeros(1, 3, cfg.image_size, cfg.image_size, device=self.backend.device)
            self._unconditional = (self.encode_prompt(""), self.backend.encode_image(clip_pixels(grey, cfg)))
        return self._unconditional

    def schedule(self, opts: SamplingOptions) -> DDIMSchedule:
        key = (opts.steps, opts.timestep_spacing, opts.eta)
        if key not in self._schedules:
            buffers = self.backend.schedule_tensors()
            self._schedules[key] = build_ddim_schedule(buffers, self.preset.diffusion, *key)
        return self._schedules[key]

    def runner(
        self,
        opts: SamplingOptions,
        guidance: Guidance,
        inputs: SamplerInputs,
        x_T: torch.Tensor,
        windows: TemporalWindows | None = None,
    ) -> GraphRunner:
        """One captured step per (schedule, guidance, windows, shapes), reused across videos."""
        shapes = (tuple(x_T.shape), tuple(inputs.context.shape))
        key = (opts.steps, opts.timestep_spacing, opts.eta, guidance, windows, shapes)
        if key not in self._runners:
            self._runners[key] = GraphRunner(
                self.denoiser(guidance, windows, x_T.device),
                self.schedule(opts),
                guidance,
                inputs,
                x_T,
                opts.eta > 0,
                self.capture,
                self.kernels,
            )
        return self._runners[key]

    def denoiser(self, guidance: Guidance, windows: TemporalWindows | None, device: torch.device) -> Denoiser:
        """The backend's UNet, or for a video longer than its window, the UNet over overlapping windows."""
        if windows is None or windows.frames == windows.window:
            return self.backend.unet
        if self.backend.unet_frames not in (None, windows.window):
            raise UsageError(
                f"the {type(self.backend).__name__} runs graphs of {self.backend.unet_frames} frames: "
                f"use --window {self.backend.unet_frames}, or the torch backend"
            )
        limit = self.backend.max_unet_batch
        unet = self.preset.unet
        context_tokens = unet.text_tokens + unet.image_tokens_per_frame * windows.window
        per_call = None if limit is None else limit // guidance.branches
        return WindowedDenoiser(self.backend.unet, windows, context_tokens, per_call, device)

    def conditioning(
        self, images: torch.Tensor, prompt: str, mode: str, guidance: Guidance, frame_stride: int, frames: int
    ) -> tuple[SamplerInputs, References | None]:
        """images [1 or 2, 3, H, W] in [-1, 1] (interpolate: first and last) -> (the sampler's inputs for a video
        of `frames` latent frames, key frames at its ends; the decoder's reference features of the first and
        last image: a dual-ref decoder's, else None)."""
        first = images[:1]
        text, image = self.encode_prompt(prompt), self.backend.encode_image(clip_pixels(first, self.preset.image))
        references = None
        if self.preset.vae.dual_ref is None:
            z = self.backend.encode_latents(images).float()  # [1 or 2, 4, h, w]: each key frame once
        else:  # one encoder pass gives both (docs/models.md §6.2); loop: the one image at both ends
            z, features = self.backend.encode_keyframes(images)
            z, references = z.float(), tuple(r[[0, -1]].clone() for r in features)
        if mode == "animate":
            concat = z[:1, :, None].expand(-1, -1, frames, -1, -1)
        else:
            concat = torch.zeros(1, z.shape[1], frames, *z.shape[2:], device=z.device)
            concat[:, :, 0] = z[0]
            concat[:, :, -1] = z[-1]  # loop: the same image at both ends
        uc_text, uc_image = self.unconditional()
        branches = [torch.cat([text, image], 1), torch.cat([uc_text, uc_image], 1), torch.cat([uc_text, image], 1)]
        context = torch.cat(branches[: guidance.branches])
        return SamplerInputs(context=context, concat=concat, frame_stride=frame_stride), references

    def decoded_chunks(
        self, latents: torch.Tensor, mode: str, references: References | None = None
    ) -> Iterator[np.ndarray]:
        """[1, 4, T, h, w] -> uint8 [k, H, W, 3] chunks of `decode_chunk` frames, one VAE call each: memory for
        decoding does not grow with T, and a writer can stream them. With a dual-ref decoder's `references`, the
        whole clip at once (`dcrt.families.dynamicrafter.clip_decode.decode_clip`). A loop's last frame (a repeat of
        its first, which the original drops) is left out."""
        z = latents[0].transpose(0, 1)  # [T, 4, h, w]
        with self.backend.running("vae"):
            if references is not None:
                frames = decode_clip(self.backend, z, references)
                yield frames[:-1] if mode == "loop" else frames
                return
            if mode == "loop":
                z = z[:-1]
            for chunk in z.split(self.backend.decode_chunk):
                # Converted before the next call: a backend may reuse its output buffer.
                yield to_uint8_frames(self.backend.decode_latents(chunk))

    def denoise(
        self,
        inputs: SamplerInputs,
        guidance: Guidance,
        opts: SamplingOptions,
        x_T: torch.Tensor,
        noise: NoiseSource | None,
        on_step: StepCallback | None = None,
        windows: TemporalWindows | None = None,
    ) -> torch.Tensor:
        """The DDIM loop from x_T [1, 4, T, h, w]: the graph runner, or the eager sampler. `windows`: the
        temporal windows of a video longer than the model's window (None: the UNet sees all T frames)."""
        if self.cuda_graph:
            return self.runner(opts, guidance, inputs, x_T, windows).run(inputs, x_T, noise, on_step)
        denoise = self.denoiser(guidance, windows, x_T.device)
        return sample(denoise, inputs, self.schedule(opts), guidance, x_T, noise, on_step)

    def sample(
        self,
        images: list,
        prompt: str,
        mode: str,
        opts: SamplingOptions,
        x_T: torch.Tensor | None = None,
        on_step: StepCallback | None = None,
        timer: StageTimer | None = None,
    ) -> tuple[torch.Tensor, References | None]:
        """Conditioning and denoising, each inside `timer(stage)` when a timer is given: (the final latents
        [1, 4, frames, h, w] float32, a dual-ref decoder's reference features). `decoded_chunks` turns them
        into frames."""
        self.preset.check_mode(mode)
        timer = timer or untimed
        device = self.backend.device
        guidance = guidance_for(opts)
        windows = opts.windows(mode)
        with timer("conditioning"):
            pixels = torch.cat([load_image(im, opts.height, opts.width) for im in images]).to(device)
            inputs, references = self.conditioning(pixels, prompt, mode, guidance, opts.frame_stride, opts.frames)
        shape = (1, self.preset.vae.z_channels, opts.frames, opts.height // 8, opts.width // 8)
        if x_T is not None and tuple(x_T.shape) != shape:
            raise UsageError(f"x_T must have shape {list(shape)}, got {list(x_T.shape)}")
        with timer("denoise"), self.backend.running("unet"):
            noise = NoiseSource(opts.seed, device)
            x_T = noise.draw_initial(shape, windows, opts.seed) if x_T is None else x_T.to(device)
            latents = self.denoise(inputs, guidance, opts, x_T, noise if opts.eta > 0 else None, on_step, windows)
        return latents, references

    def generate(
        self,
        images: list,
        prompt: str,
        mode: str,
        opts: SamplingOptions,
        x_T: torch.Tensor | None = None,
        on_step: StepCallback | None = None,
        timer: StageTimer | None = None,
    ) -> VideoResult:
        """`sample`, then decoding (inside `timer("decode")`): the latents and all frames."""
        latents, references = self.sample(images, prompt, mode, opts, x_T, on_step, timer)
        with (timer or untimed)("decode"):
            frames = np.concatenate(list(self.decoded_chunks(latents, mode, references)))
        return VideoResult(latents=latents, frames=frames)


def pipeline_for(model: DynamiCrafter | Backend | Pipeline) -> Pipeline:
    """The model's or backend's pipeline, created once and kept on it, so that its cached unconditional context
    and captured runners serve every call (the command line's batch runs each video through dcrt.api)."""
    if isinstance(model, Pipeline):
        return model
    if getattr(model, "_pipeline", None) is None:
        model._pipeline = Pipeline(model if isinstance(model, Backend) else TorchBackend(model))
    return model._pipeline
