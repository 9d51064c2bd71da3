"""The CUDA kernels of the lean DDIM runner: loading a compiled cubin (`dcrt.runners.kernel_compile`) and launching it.

`KernelModule` loads a cubin with the driver API and launches its functions; `Kernels` wraps each kernel
for torch tensors, launching on torch's current stream, so the launches can be captured in a CUDA graph
(pass preallocated outputs). `ReferenceKernels` is the same interface in torch ops: the kernels' reference.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Protocol

import torch

from dcrt.families.dynamicrafter.sampler import combine_guidance, ddim_step
from dcrt.families.dynamicrafter.schedule import DDIMCoefficients
from dcrt.runners.kernel_compile import KERNEL_NAMES, KernelError, arch_for_capability, compile_cubin, launch_constants

# --- driver: load and launch (GPU only) -----------------------------------------------------------


def _driver_check(result):
    from cuda.bindings import driver

    err, *values = result if isinstance(result, tuple) else (result,)
    if err != driver.CUresult.CUDA_SUCCESS:
        name = driver.cuGetErrorName(err)[1]
        raise KernelError(f"CUDA driver: {name.decode() if isinstance(name, bytes) else err}")
    return values[0] if len(values) == 1 else values


class KernelModule:
    """A cubin loaded into the primary context of one device (the context PyTorch uses)."""

    def __init__(self, cubin: bytes, device: int = 0):
        from cuda.bindings import driver

        self._driver = driver
        _driver_check(driver.cuInit(0))
        self._device = _driver_check(driver.cuDeviceGet(device))
        self._context = _driver_check(driver.cuDevicePrimaryCtxRetain(self._device))
        _driver_check(driver.cuCtxSetCurrent(self._context))
        self._module = _driver_check(driver.cuModuleLoadData(cubin))
        self._functions: dict[str, object] = {}

    def function(self, name: str):
        if name not in self._functions:
            self._functions[name] = _driver_check(self._driver.cuModuleGetFunction(self._module, name.encode()))
        return self._functions[name]

    def launch(self, name: str, grid: tuple[int, ...], block: tuple[int, ...], args: list, stream: int = 0) -> None:
        """Launch `name`; `args` are ctypes values (c_void_p for pointers) in the kernel's parameter order."""
        grid, block = (*grid, 1, 1)[:3], (*block, 1, 1)[:3]
        addresses = (ctypes.c_void_p * len(args))(*(ctypes.addressof(a) for a in args))
        _driver_check(
            self._driver.cuLaunchKernel(
                self.function(name), *grid, *block, 0, self._driver.CUstream(stream), ctypes.addressof(addresses), 0
            )
        )


# --- torch wrappers -------------------------------------------------------------------------------


def _grid(n: int) -> int:
    c = launch_constants()
    return max(1, min(-(-n // c["DCRT_BLOCK"]), c["DCRT_MAX_BLOCKS"]))


def cfg_num_partials(n: int) -> int:
    c = launch_constants()
    return max(1, min(-(-n // c["DCRT_CFG_CHUNK"]), c["DCRT_CFG_MAX_PARTIALS"]))


def cfg_workspace(n: int, batch: int, device) -> torch.Tensor:
    """The float64 workspace of a rescaled cfg_combine for `batch` samples of n elements."""
    return torch.empty(batch * cfg_num_partials(n) * 4, dtype=torch.float64, device=device)


def _ptr(t: torch.Tensor | None, dtypes: tuple[torch.dtype, ...], what: str) -> ctypes.c_void_p:
    if t is None:
        return ctypes.c_void_p(0)
    if t.dtype not in dtypes or not t.is_cuda or not t.is_contiguous():
        raise ValueError(f"{what} must be a contiguous CUDA tensor of {dtypes}, got {t.dtype} on {t.device}")
    return ctypes.c_void_p(t.data_ptr())


_F32 = (torch.float32,)
# Model outputs may be any of these: each converts exactly to float32 inside the kernel.
_REAL = (torch.float32, torch.float16, torch.bfloat16)
_SUFFIX = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}


def _suffix(t: torch.Tensor) -> str:
    return _SUFFIX[t.dtype]


class StepKernels(Protocol):
    """What the graph runner needs for a fused step; `Kernels` (CUDA) and `ReferenceKernels` (torch) have it."""

    def cfg_combine(self, guided, out, guidance, workspace=None) -> None: ...

    def ddim_update(self, x_prev, x, model_out, noise, coefs, step) -> None: ...


class ReferenceKernels:
    """The fused step kernels' reference: the same interface, computed with dcrt's torch functions.

    kernels/guidance.cu and kernels/ddim.cu are checked against exactly these calls (tests/runners/test_kernels.py);
    on a machine without CUDA they stand in for the kernels, so the fused wiring runs in CI and in
    `benchmarks/gpu_report.py --dry-run`.
    """

    def cfg_combine(self, guided, out, guidance, workspace=None) -> None:
        guided.copy_(combine_guidance(out, guidance))

    def ddim_update(self, x_prev, x, model_out, noise, coefs, step) -> None:
        coefficients = DDIMCoefficients.at_device_step(coefs, step, x.ndim)
        x_prev.copy_(ddim_step(x, model_out.float(), noise, coefficients))


class Kernels:
    """The dcrt kernels compiled for one CUDA device, launched on torch's current stream.

    Every call writes into the output tensors it is given and allocates nothing, so it can run
    inside `torch.cuda.graph` capture.
    """

    def __init__(self, device: torch.device | str | int | None = None):
        torch.cuda.init()
        device = torch.device("cuda", device) if isinstance(device, int) else torch.device(device or "cuda")
        self.device = torch.device("cuda", torch.cuda.current_device() if device.index is None else device.index)
        arch = arch_for_capability(*torch.cuda.get_device_capability(self.device))
        self.module = KernelModule(compile_cubin(arch), self.device.index)
        for name in KERNEL_NAMES:  # resolve now: no driver lookups later, e.g. during graph capture
            self.module.function(name)

    def _launch(self, name: str, grid, block, args) -> None:
        self.module.launch(name, grid, block, args, torch.cuda.current_stream(self.device).cuda_stream)

    def ddim_update(self, x_prev, x, model_out, noise, coefs, step) -> None:
        """x_prev = ddim_step at position *step (int32 [1] on the device); coefs: DDIMSchedule.table() on the device."""
        n = x.numel()
        if x_prev.numel() != n or model_out.numel() != n or (noise is not None and noise.numel() != n):
            raise ValueError("x_prev, x, model_out and noise must have the same number of elements")
        args = [
            _ptr(x_prev, _F32, "x_prev"),
            _ptr(x, _F32, "x"),
            _ptr(model_out, _REAL, "model_out"),
            _ptr(noise, _F32, "noise"),
            _ptr(coefs, _F32, "coefs"),
            ctypes.c_int(coefs.shape[1]),
            _ptr(step, (torch.int32,), "step"),
            ctypes.c_longlong(n),
        ]
        self._launch(f"ddim_update_{_suffix(model_out)}", (_grid(n),), (launch_constants()["DCRT_BLOCK"],), args)

    def cfg_combine(self, guided, out, guidance, workspace=None) -> None:
        """guided [B, ...] float32 = combine_guidance(out [branches * B, ...], guidance)."""
        batch, n, branches = guided.shape[0], guided[0].numel(), guidance.branches
        if out.numel() != branches * batch * n:
            raise ValueError(f"out must hold {branches} branches of {list(guided.shape)}, got {list(out.shape)}")
        scale, image_scale = (
            guidance.guidance_scale,
            guidance.image_guidance_scale if guidance.image_guidance_scale is not None else 0.0,
        )
        rescaled = guidance.guidance_rescale > 0.0 and branches > 1
        partials = cfg_num_partials(n)
        if rescaled:
            if workspace is None or workspace.numel() < batch * partials * 4:
                raise ValueError("a rescaled combine needs a workspace from cfg_workspace(n, batch, device)")
            args = [
                _ptr(out, _REAL, "out"),
                _ptr(workspace, (torch.float64,), "workspace"),
                ctypes.c_longlong(n),
                ctypes.c_int(batch),
                ctypes.c_int(branches),
                ctypes.c_float(scale),
                ctypes.c_float(image_scale),
            ]
            self._launch(f"cfg_partials_{_suffix(out)}", (partials, batch), (launch_constants()["DCRT_BLOCK"],), args)
        args = [
            _ptr(out, _REAL, "out"),
            _ptr(guided, _F32, "guided"),
            _ptr(workspace if rescaled else None, (torch.float64,), "workspace"),
            ctypes.c_int(partials),
            ctypes.c_longlong(n),
            ctypes.c_int(batch),
            ctypes.c_int(branches),
            ctypes.c_float(scale),
            ctypes.c_float(image_scale),
            ctypes.c_float(guidance.guidance_rescale),
            ctypes.c_float(1.0 - guidance.guidance_rescale),  # rounded from the double, as the torch reference does
        ]
        self._launch(f"cfg_combine_{_suffix(out)}", (_grid(n), batch), (launch_constants()["DCRT_BLOCK"],), args)

    # The Python runtime calls only the two methods above (GraphRunner, through StepKernels; it gathers t and
    # moves the step with torch ops). The kernels below serve C++ hosts (kernels/launch.cu): they are wrapped
    # here only so that tests/runners/test_kernels.py checks each against its torch reference on a GPU.

    def ddim_timestep(self, t, timesteps, step) -> None:
        """t[:] = timesteps[*step] (int64)."""
        args = [
            _ptr(t, (torch.int64,), "t"),
            _ptr(timesteps, (torch.int64,), "timesteps"),
            _ptr(step, (torch.int32,), "step"),
            ctypes.c_int(t.numel()),
        ]
        self._launch("ddim_timestep", (1,), (32,), args)

    def ddim_advance(self, step) -> None:
        self._launch("ddim_advance", (1,), (1,), [_ptr(step, (torch.int32,), "step")])

    def frames_to_u8(self, frames, video) -> None:
        """frames uint8 [T, H, W, 3] = to_uint8_frames(video [T, 3, H, W] float32/half)."""
        count, channels, height, width = video.shape
        if channels != 3 or tuple(frames.shape) != (count, height, width, 3):
            raise ValueError(f"frames must be [T, H, W, 3] for video [T, 3, H, W], got {list(frames.shape)}")
        args = [_ptr(frames, (torch.uint8,), "frames"), _ptr(video, _REAL, "video"), ctypes.c_int(count)]
        args.append(ctypes.c_longlong(height * width))
        grid = _grid(count * height * width)
        self._launch(f"frames_to_u8_{_suffix(video)}", (grid,), (launch_constants()["DCRT_BLOCK"],), args)

    def image_u8_to_f32(self, dst, images) -> None:
        """dst float32 [N, 3, H, W] in [-1, 1] from images uint8 [N, H, W, 3]."""
        count, height, width, channels = images.shape
        if channels != 3 or tuple(dst.shape) != (count, 3, height, width):
            raise ValueError(f"dst must be [N, 3, H, W] for images [N, H, W, 3], got {list(dst.shape)}")
        args = [_ptr(dst, _F32, "dst"), _ptr(images, (torch.uint8,), "images"), ctypes.c_int(count)]
        args.append(ctypes.c_longlong(height * width))
        self._launch("image_u8_to_f32", (_grid(dst.numel()),), (launch_constants()["DCRT_BLOCK"],), args)

    def clip_normalize(self, dst, src, mean, std) -> None:
        """dst = ((src + 1) / 2 - mean) / std per channel, src float32 [N, 3, H, W] in [-1, 1] (dst may be src)."""
        if src.ndim != 4 or src.shape[1] != 3 or dst.shape != src.shape:
            raise ValueError(f"src and dst must be [N, 3, H, W], got {list(src.shape)} and {list(dst.shape)}")
        args = [
            _ptr(dst, _F32, "dst"),
            _ptr(src, _F32, "src"),
            ctypes.c_int(src.shape[0]),
            ctypes.c_longlong(src.shape[2] * src.shape[3]),
            *(ctypes.c_float(v) for v in (*mean, *std)),
        ]
        self._launch("clip_normalize_f32", (_grid(src.numel()),), (launch_constants()["DCRT_BLOCK"],), args)


@functools.cache
def _kernels_on(index: int) -> Kernels:
    return Kernels(index)


def load_kernels(device: torch.device | str) -> Kernels:
    """The kernels for a CUDA device, compiled (or read from the on-disk cache) and loaded once per process:
    every pipeline on the device shares the one module."""
    device = torch.device(device)
    if device.type != "cuda":
        raise KernelError(f"the fused kernels run on CUDA devices, not {device}")
    return _kernels_on(torch.cuda.current_device() if device.index is None else device.index)
