"""The CUDA kernels of the lean DDIM runner: runtime compilation (NVRTC), caching, loading, launch.

The sources live in the repository's top-level `kernels/` folder (the one source of truth, also built
by CMake for C++ hosts); an installed wheel carries a copy as package data in `dcrt/_kernels/`.
`compile_cubin(arch)` compiles them into one cubin with NVRTC and caches it under
$DCRT_CACHE_DIR/kernels (default ~/.cache/dcrt/kernels), keyed by the sources, the architecture, the
options and the NVRTC version. That part needs no GPU or driver. `KernelModule` loads a cubin with
the driver API and launches its functions; `Kernels` wraps each kernel for torch tensors, launching
on torch's current stream, so the launches can be captured in a CUDA graph (pass preallocated outputs).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import re
from pathlib import Path
from typing import Protocol

import torch

from dcrt.atomic import atomic_file
from dcrt.errors import DcrtError
from dcrt.sampler import combine_guidance, ddim_step
from dcrt.schedule import DDIMCoefficients

KERNEL_FILES = ("ddim.cu", "guidance.cu", "frames.cu", "preprocess.cu")  # launch.cu: C++ hosts only
HEADER_FILES = ("common.cuh", "dcrt_kernels.h")
KERNEL_NAMES = (
    "ddim_update_f32",
    "ddim_update_f16",
    "ddim_update_bf16",
    "ddim_timestep",
    "ddim_advance",
    "cfg_partials_f32",
    "cfg_partials_f16",
    "cfg_partials_bf16",
    "cfg_combine_f32",
    "cfg_combine_f16",
    "cfg_combine_bf16",
    "frames_to_u8_f32",
    "frames_to_u8_f16",
    "frames_to_u8_bf16",
    "image_u8_to_f32",
    "clip_normalize_f32",
)
NVRTC_OPTIONS = ("--std=c++17", "-default-device")


class KernelError(DcrtError):
    """A kernel could not be found, compiled, loaded or launched."""


# --- sources --------------------------------------------------------------------------------------


def source_dir() -> Path:
    """`<checkout>/kernels` when running from a checkout, else the packaged copy `dcrt/_kernels`."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "kernels", here / "_kernels"):
        if all((candidate / name).is_file() for name in KERNEL_FILES + HEADER_FILES):
            return candidate
    raise KernelError(f"the CUDA kernel sources are missing from {here.parent / 'kernels'} and {here / '_kernels'}")


@functools.cache
def launch_constants() -> dict[str, int]:
    """The launch configuration #defines of dcrt_kernels.h (DCRT_BLOCK, ...), shared with the C++ launchers."""
    text = (source_dir() / "dcrt_kernels.h").read_text()
    return {name: int(value) for name, value in re.findall(r"^#define (DCRT_\w+) (\d+)", text, flags=re.MULTILINE)}


def cuda_include_dir() -> Path:
    """The CUDA headers (cuda_fp16.h): the nvidia pip wheels, then $CUDA_HOME / $CUDA_PATH, then /usr/local/cuda."""
    candidates = []
    try:
        from cuda.pathfinder import find_nvidia_header_directory

        candidates.append(find_nvidia_header_directory("cudart"))
    except (ImportError, RuntimeError):  # no pathfinder (older cuda-python), or it found no headers
        pass
    candidates += [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    for root in candidates:
        if not root:
            continue
        for inc in (Path(root), Path(root) / "include"):
            if (inc / "cuda_fp16.h").is_file():
                return inc
    raise KernelError("cuda_fp16.h not found: install the CUDA toolkit headers or set CUDA_HOME")


# --- NVRTC ----------------------------------------------------------------------------------------


def _nvrtc():
    try:
        from cuda.bindings import nvrtc
    except ImportError as exc:
        raise KernelError("compiling the CUDA kernels needs cuda-python (pip install 'dcrt[gpu]')") from exc
    return nvrtc


def _nvrtc_check(result):
    nvrtc = _nvrtc()
    err, *values = result
    if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        raise KernelError(f"NVRTC: {nvrtc.nvrtcGetErrorString(err)[1].decode()}")
    return values[0] if len(values) == 1 else values


def nvrtc_version() -> tuple[int, int]:
    return tuple(_nvrtc_check(_nvrtc().nvrtcVersion()))


def supported_archs() -> list[int]:
    """Compute capabilities NVRTC can target, e.g. [75, 80, 86, ..., 90, 100, 120]."""
    return list(_nvrtc_check(_nvrtc().nvrtcGetSupportedArchs()))


def arch_for_capability(major: int, minor: int) -> str:
    """The cubin architecture for a device: its own, else the newest same-major one NVRTC supports
    (a cubin for sm_XY runs on sm_XZ with Z >= Y)."""
    same_major = [cc for cc in supported_archs() if cc // 10 == major and cc % 10 <= minor]
    if not same_major:
        raise KernelError(f"NVRTC {nvrtc_version()} cannot compile for compute capability {major}.{minor}")
    return f"sm_{max(same_major)}"


def _nvrtc_compile(source: str, arch: str, include_dirs: list[Path]) -> bytes:
    nvrtc = _nvrtc()
    prog = _nvrtc_check(nvrtc.nvrtcCreateProgram(source.encode(), b"dcrt_kernels.cu", 0, [], []))
    try:
        options = [f"--gpu-architecture={arch}", *NVRTC_OPTIONS, *(f"-I{d}" for d in include_dirs)]
        (err,) = nvrtc.nvrtcCompileProgram(prog, len(options), [o.encode() for o in options])
        if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            size = _nvrtc_check(nvrtc.nvrtcGetProgramLogSize(prog))
            log = b" " * size
            _nvrtc_check(nvrtc.nvrtcGetProgramLog(prog, log))
            log = log.decode(errors="replace").rstrip("\0")
            raise KernelError(f"NVRTC failed to compile the kernels for {arch}:\n{log}")
        size = _nvrtc_check(nvrtc.nvrtcGetCUBINSize(prog))
        cubin = b" " * size
        _nvrtc_check(nvrtc.nvrtcGetCUBIN(prog, cubin))
        return cubin
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


def cache_dir() -> Path:
    root = os.environ.get("DCRT_CACHE_DIR")
    return Path(root) / "kernels" if root else Path.home() / ".cache" / "dcrt" / "kernels"


def compile_cubin(arch: str = "sm_90", files: tuple[str, ...] = KERNEL_FILES, cache: bool = True) -> bytes:
    """Compile `files` (default: all kernels) into one cubin for `arch` ("sm_90"); cached on disk."""
    src = source_dir()
    include_dirs = [src, cuda_include_dir()]
    source = "".join(f'#include "{name}"\n' for name in files)
    key = hashlib.sha256()
    for part in (arch, repr(nvrtc_version()), repr(NVRTC_OPTIONS), str(include_dirs[1]), source):
        key.update(part.encode() + b"\0")
    for path in sorted(src.glob("*")):
        if path.suffix in (".cu", ".cuh", ".h"):
            key.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    target = cache_dir() / f"{arch}-{key.hexdigest()[:24]}.cubin"
    if cache and target.is_file():
        return target.read_bytes()
    cubin = _nvrtc_compile(source, arch, include_dirs)
    if cache:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_file(target) as tmp:
                tmp.write_bytes(cubin)
        except OSError:  # a read-only cache is no reason to fail: the cubin is in hand
            pass
    return cubin


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

    kernels/guidance.cu and kernels/ddim.cu are checked against exactly these calls (tests/test_kernels.py);
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
    # here only so that tests/test_kernels.py checks each against its torch reference on a GPU.

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
