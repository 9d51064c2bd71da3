"""The lean DDIM runner: one denoising step captured once as a CUDA graph and replayed `steps` times.

Everything a step reads lives on the device and is indexed by a device-side step counter: the
per-step coefficients (a [8, S] table), the timesteps, and all S noise tensors (drawn up front from
the seeded generator in the same order the eager sampler draws them, so the values are identical).
A step is then: gather t and the coefficients at `step`, the UNet on the guidance batch, the
guidance combine, the DDIM update into `x`, `step -= 1` — the same launches every time, so it is
captured once and replayed with no host synchronisation until the end.

The guidance combine and the DDIM update are either torch ops (`combine_guidance`, `ddim_step`: the
eager sampler's own functions) or, with `kernels`, the fused CUDA kernels that implement them.
Capture needs a backend whose calls only enqueue work (`Backend.capturable`); the pipeline checks.

On a CPU (or with `capture=False`) the same step body runs eagerly, which is how CI checks that the
graph's math equals the eager sampler's.
"""

from __future__ import annotations

import torch

from dcrt.families.common import NoiseSource, StepCallback
from dcrt.families.dynamicrafter.sampler import Denoiser, Guidance, SamplerInputs, combine_guidance, ddim_step
from dcrt.families.dynamicrafter.schedule import DDIMCoefficients, DDIMSchedule
from dcrt.runners.kernels import StepKernels, cfg_workspace


class CapturedLoop:
    """What the lean runners share: the loop over `steps` that replays one captured step, or on a CPU runs its body.

    A subclass keeps its state in static buffers, `x` among them (the latents), and defines `_step` (one step at its
    device-side counter, capturable) and `_rewind` (the counter back at the first step)."""

    x: torch.Tensor
    steps: int
    capture: bool  # record the step as a CUDA graph on the first run
    graph: torch.cuda.CUDAGraph | None = None

    def _step(self) -> None:
        raise NotImplementedError

    def _rewind(self) -> None:
        raise NotImplementedError

    def _capture(self) -> None:
        # Warm up on a side stream first (allocator pools, lazy kernel loading, library workspaces), as capture
        # requires. Inputs are loaded already, so warm-up steps compute on real data; the state they advance is
        # restored afterwards.
        x_start = self.x.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                self._rewind()
                self._step()
        torch.cuda.current_stream().wait_stream(stream)
        self._rewind()
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self._step()
        self.x.copy_(x_start)
        self._rewind()

    def _loop(self, on_step: StepCallback | None) -> torch.Tensor:
        """All steps from the loaded buffers; returns the final latents (float32, a new tensor)."""
        if self.capture and self.graph is None:
            self._capture()
        for k in range(self.steps):
            if self.graph is not None:
                self.graph.replay()
            else:
                self._step()
            if on_step is not None:
                on_step(k + 1, self.steps)
        return self.x.clone()


class GraphRunner(CapturedLoop):
    """Static buffers + one captured step for a fixed (schedule, guidance, shapes); `run` may be called
    for any number of videos: each call copies its inputs into the buffers and replays."""

    def __init__(
        self,
        denoise: Denoiser,
        schedule: DDIMSchedule,
        guidance: Guidance,
        inputs: SamplerInputs,
        x_T: torch.Tensor,
        with_noise: bool,
        capture: bool | None = None,
        kernels: StepKernels | None = None,
    ):
        """`capture`: record the step as a CUDA graph (None: on CUDA devices). `kernels`: run the guidance
        combine and the DDIM update as fused kernels (`dcrt.runners.kernels.Kernels` for the device)."""
        device = x_T.device
        n, steps = guidance.branches, schedule.num_steps
        self.denoise, self.guidance, self.steps, self.kernels = denoise, guidance, steps, kernels
        self.capture = device.type == "cuda" if capture is None else capture
        schedule = schedule.to(device)
        self.table = schedule.table()  # [8, S]
        self.timesteps = schedule.timesteps
        self.context = torch.empty_like(inputs.context[:n], device=device)
        self.concat = torch.empty((n, *inputs.concat.shape[1:]), dtype=torch.float32, device=device)
        self.frame_stride = torch.empty((n,), dtype=torch.long, device=device)
        self.x = torch.empty(x_T.shape, dtype=torch.float32, device=device)
        # int32: index_select takes it, and so does the DDIM kernel (no per-step conversion).
        self.step = torch.empty((1,), dtype=torch.int32, device=device)
        self.noise = torch.empty((steps, *x_T.shape), dtype=torch.float32, device=device) if with_noise else None
        if kernels is not None:
            self.guided = torch.empty(x_T.shape, dtype=torch.float32, device=device)
            self.workspace = cfg_workspace(self.x[0].numel(), x_T.shape[0], device)

    def _load(self, inputs: SamplerInputs, x_T: torch.Tensor, noise: NoiseSource | None) -> None:
        n = self.guidance.branches
        self.context.copy_(inputs.context[:n])
        self.concat.copy_(inputs.concat.expand(n, -1, -1, -1, -1))
        self.frame_stride.fill_(inputs.frame_stride)
        self.x.copy_(x_T)
        self._rewind()
        if self.noise is not None:
            # The eager loop draws one tensor per step, visiting positions S-1 .. 0: same generator, same order.
            for i in reversed(range(self.steps)):
                self.noise[i].copy_(noise.draw(tuple(self.x.shape)))

    def _step(self) -> None:
        """One step, reading everything at the device-side index `self.step` (capturable)."""
        n = self.guidance.branches
        t = self.timesteps.index_select(0, self.step).expand(n)
        model_in = torch.cat([self.x.expand(n, -1, -1, -1, -1), self.concat], dim=1)
        out = self.denoise(model_in, t, self.context, self.frame_stride)
        noise = self.noise.index_select(0, self.step)[0] if self.noise is not None else None
        if self.kernels is None:
            coefficients = DDIMCoefficients.at_device_step(self.table, self.step, self.x.ndim)
            self.x.copy_(ddim_step(self.x, combine_guidance(out, self.guidance), noise, coefficients))
        else:
            self.kernels.cfg_combine(self.guided, out.contiguous(), self.guidance, self.workspace)
            self.kernels.ddim_update(self.x, self.x, self.guided, noise, self.table, self.step)
        self.step.sub_(1)

    def _rewind(self) -> None:
        """Point the step counter at the first step (position S-1)."""
        self.step.fill_(self.steps - 1)

    @torch.inference_mode()
    def run(
        self, inputs: SamplerInputs, x_T: torch.Tensor, noise: NoiseSource | None, on_step: StepCallback | None = None
    ) -> torch.Tensor:
        """All steps from x_T; returns the final latents [1, 4, T, h, w] (float32, a new tensor)."""
        self._load(inputs, x_T, noise)
        return self._loop(on_step)
