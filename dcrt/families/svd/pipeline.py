"""Stable Video Diffusion image-to-video: image -> conditioning -> EDM Euler sampler -> frames (docs/models.md §8,
docs/sampling.md §5.5).

What it shares with DynamiCrafter's pipeline (dcrt.families.dynamicrafter.pipeline) it imports: image loading and
resizing (dcrt.images), the frame conversion, `VideoResult` and its writer, the progress callback and the stage timer.
What differs is the conditioning (a CLIP image embedding, the latent of a noise-augmented copy of the image, three
added time ids; zeros for the unconditional branch) and the sampler (dcrt.families.svd.sampler).

Noise: one generator seeded with `seed` on the backend's device draws, in this order, the augmentation noise
[1, 3, H, W], then x_T drawn as [1, T, 4, h, w] (frames before channels) and transposed: diffusers'
StableVideoDiffusionPipeline draws the same two tensors in the same order and layout, so one seed gives its
video (tests/families/svd/test_svd_pipeline.py checks it end to end).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from dcrt.errors import UsageError
from dcrt.families.common import NoiseSource, StageTimer, StepCallback, VideoResult, untimed
from dcrt.families.svd.backend import SVDBackend
from dcrt.families.svd.options import SVDOptions
from dcrt.families.svd.sampler import EDMInputs, EDMSchedule, FrameGuidance, build_edm_schedule, sample_edm
from dcrt.images import load_image, to_uint8_frames
from dcrt.models.clip import clip_pixels
from dcrt.runners.edm import EDMGraphRunner


class SVDPipeline:
    """Conditioning, sampling and decoding over one SVD backend. Caches the schedules."""

    def __init__(self, backend: SVDBackend, cuda_graph: bool | None = None):
        """`cuda_graph`: sample with the graph runner (dcrt.runners.edm), captured on CUDA (None: on CUDA when the
        backend is capturable), else the eager loop. On a CPU the runner's step body runs uncaptured."""
        on_cuda = backend.device.type == "cuda"
        self.backend = backend
        self.preset = backend.preset
        self.cuda_graph = on_cuda and backend.capturable if cuda_graph is None else cuda_graph
        if self.cuda_graph and on_cuda and not backend.capturable:
            raise UsageError(
                f"the {type(backend).__name__} synchronises inside its calls, so it cannot run in a CUDA graph: "
                "use cuda_graph=False"
            )
        self._schedules: dict[int, EDMSchedule] = {}
        self._runners: dict[tuple, EDMGraphRunner] = {}

    def schedule(self, steps: int) -> EDMSchedule:
        if steps not in self._schedules:
            self._schedules[steps] = build_edm_schedule(self.preset.edm, steps).to(self.backend.device)
        return self._schedules[steps]

    def latent_shape(self) -> tuple[int, int, int, int, int]:
        p = self.preset
        return (1, p.vae.z_channels, p.frames, p.latent_height, p.latent_width)

    def check(self, opts: SVDOptions) -> None:
        """What this backend cannot run, before any work: static graphs take the decoder chunks they were made for."""
        chunks = self.backend.decode_chunks
        if chunks is not None and opts.decode_chunk not in chunks:
            raise UsageError(
                f"the {type(self.backend).__name__} decodes {chunks[0]} frames per call (its graphs' shape): "
                f"use --decode-chunk {chunks[0]} (the preset's), or the torch backend"
            )

    def conditioning(self, image: torch.Tensor, opts: SVDOptions, noise: NoiseSource) -> EDMInputs:
        """image [1, 3, H, W] in [-1, 1] -> the sampler's inputs, conditional branch first (docs/models.md §8.6):
        the CLIP embedding of the clean image, the unscaled latent of the augmented one (repeated over frames)."""
        embeds = self.backend.encode_image(clip_pixels(image, self.preset.image)).clone()  # [1, 1, D]
        augmented = image + opts.noise_aug_strength * noise.draw(tuple(image.shape))
        z = self.backend.encode_latents(augmented).float()  # [1, 4, h, w]
        concat = z[:, :, None].expand(-1, -1, self.preset.frames, -1, -1)
        time_ids = torch.tensor([opts.added_time_ids()], device=image.device)
        return EDMInputs(
            image_embeds=torch.cat([embeds, torch.zeros_like(embeds)]),
            concat=torch.cat([concat, torch.zeros_like(concat)]),
            added_time_ids=time_ids.expand(2, -1),
        )

    def initial_noise(self, noise: NoiseSource) -> torch.Tensor:
        """Unit Gaussian x_T [1, 4, T, h, w], drawn frame-major as diffusers does (module docstring)."""
        b, c, t, h, w = self.latent_shape()
        return noise.draw((b, t, c, h, w)).transpose(1, 2)

    def sample(
        self,
        image,
        opts: SVDOptions,
        x_T: torch.Tensor | None = None,
        on_step: StepCallback | None = None,
        timer: StageTimer | None = None,
    ) -> torch.Tensor:
        """Conditioning and denoising, each inside `timer(stage)`: the final latents [1, 4, T, h, w] float32.
        `x_T`: unit Gaussian noise of that shape instead of the seeded draw (the augmentation noise is still drawn)."""
        self.check(opts)
        timer = timer or untimed
        device = self.backend.device
        shape = self.latent_shape()
        if x_T is not None and tuple(x_T.shape) != shape:
            raise UsageError(f"x_T must have shape {list(shape)}, got {list(x_T.shape)}")
        noise = NoiseSource(opts.seed, device)
        with timer("conditioning"):
            pixels = load_image(image, self.preset.height, self.preset.width).to(device)
            inputs = self.conditioning(pixels, opts, noise)
        with timer("denoise"), self.backend.running("unet"):
            x_T = self.initial_noise(noise) if x_T is None else x_T.to(device)
            return self.denoise(inputs, opts, x_T, on_step)

    def denoise(
        self, inputs: EDMInputs, opts: SVDOptions, x_T: torch.Tensor, on_step: StepCallback | None = None
    ) -> torch.Tensor:
        """The Euler loop from unit Gaussian x_T: the graph runner, one per (steps, guidance), or the eager loop."""
        guidance = FrameGuidance(opts.min_guidance_scale, opts.max_guidance_scale)
        if not self.cuda_graph:
            return sample_edm(self.backend.unet, inputs, self.schedule(opts.steps), guidance, x_T, on_step)
        key = (opts.steps, guidance)
        if key not in self._runners:
            capture = self.backend.device.type == "cuda"
            schedule = self.schedule(opts.steps)
            self._runners[key] = EDMGraphRunner(self.backend.unet, schedule, guidance, inputs, x_T, capture)
        return self._runners[key].run(inputs, x_T, on_step)

    def decoded_chunks(self, latents: torch.Tensor, opts: SVDOptions) -> Iterator[np.ndarray]:
        """[1, 4, T, h, w] -> uint8 [k, H, W, 3] chunks of `decode_chunk` frames (the last may be shorter), one
        decoder call each: the chunk is the decoder's temporal context, so it is never padded."""
        z = latents[0].transpose(0, 1)  # [T, 4, h, w]
        with self.backend.running("vae"):
            for chunk in z.split(opts.decode_chunk):
                # Converted before the next call: a backend may reuse its output buffer.
                yield to_uint8_frames(self.backend.decode_latents(chunk))

    def generate(
        self,
        image,
        opts: SVDOptions,
        x_T: torch.Tensor | None = None,
        on_step: StepCallback | None = None,
        timer: StageTimer | None = None,
    ) -> VideoResult:
        """`sample`, then decoding (inside `timer("decode")`): the latents and all frames, to be played at fps."""
        latents = self.sample(image, opts, x_T, on_step, timer)
        with (timer or untimed)("decode"):
            frames = np.concatenate(list(self.decoded_chunks(latents, opts)))
        return VideoResult(latents=latents, frames=frames, fps=opts.fps)


def svd_pipeline_for(model) -> SVDPipeline:
    """An SVD model's or backend's pipeline (created once and kept on it, so its captured runners serve every
    call), or the pipeline itself."""
    if isinstance(model, SVDPipeline):
        return model
    if getattr(model, "_pipeline", None) is None:
        from dcrt.families.svd.torch_backend import TorchSVDBackend

        model._pipeline = SVDPipeline(model if isinstance(model, SVDBackend) else TorchSVDBackend(model))
    return model._pipeline
