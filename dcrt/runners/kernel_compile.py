"""Compiling dcrt's CUDA kernels with NVRTC, and the disk cache of the cubins. Needs no GPU, no driver, no torch.

The sources live in the repository's top-level `kernels/` folder (the one source of truth, also built
by CMake for C++ hosts); an installed wheel carries a copy as package data in `dcrt/_kernels/`.
`compile_cubin(arch)` compiles them into one cubin with NVRTC and caches it under
$DCRT_CACHE_DIR/kernels (default ~/.cache/dcrt/kernels), keyed by the sources, the architecture, the
options and the NVRTC version. Loading and launching the cubin is `dcrt.runners.kernels`.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from pathlib import Path

from dcrt.atomic import atomic_file
from dcrt.errors import DcrtError

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
    package = Path(__file__).resolve().parents[1]  # dcrt/
    for candidate in (package.parent / "kernels", package / "_kernels"):
        if all((candidate / name).is_file() for name in KERNEL_FILES + HEADER_FILES):
            return candidate
    raise KernelError(
        f"the CUDA kernel sources are missing from {package.parent / 'kernels'} and {package / '_kernels'}"
    )


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
