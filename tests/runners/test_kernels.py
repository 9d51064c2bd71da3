"""The CUDA kernels (kernels/, dcrt/runners/kernels.py).

Everywhere: every kernel compiles through the runtime's NVRTC path for sm_80 and sm_90, each source
compiles standalone with nvcc, and the CMake build (standalone and as a host's subdirectory) builds.
With -m gpu on a CUDA machine: each kernel runs on random inputs, its output poisoned beforehand, and
is compared with dcrt's own torch implementation computed on the CPU.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
import torch

from dcrt.config import ImageEncoderConfig
from dcrt.families.dynamicrafter.config import DiffusionConfig
from dcrt.families.dynamicrafter.sampler import Guidance, combine_guidance, ddim_step
from dcrt.families.dynamicrafter.schedule import COEFFICIENT_ROWS, build_ddim_schedule, schedule_tensors
from dcrt.images import load_image, to_uint8_frames
from dcrt.models.clip import clip_normalize
from dcrt.runners import kernel_compile, kernels

ARCHS = ("sm_80", "sm_90")
NVCC = shutil.which("nvcc")
CMAKE = shutil.which("cmake")


def _has_nvrtc() -> bool:
    try:
        kernel_compile.nvrtc_version()
        return True
    except Exception:
        return False


needs_nvrtc = pytest.mark.skipif(not _has_nvrtc(), reason="cuda-python / libnvrtc not installed")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DCRT_CACHE_DIR", str(tmp_path))
    return tmp_path / "kernels"


# --- compile checks (no GPU) ----------------------------------------------------------------------


def test_sources_and_header_agree():
    src = kernel_compile.source_dir()
    assert (src / "CMakeLists.txt").is_file()
    c = kernel_compile.launch_constants()
    assert [c[f"DCRT_DDIM_{name.upper()}"] for name in COEFFICIENT_ROWS] == list(range(len(COEFFICIENT_ROWS)))
    assert c["DCRT_DDIM_NUM_COEFS"] == len(COEFFICIENT_ROWS)
    declared = re.findall(r"__global__ void (\w+)\(", (src / "dcrt_kernels.h").read_text())
    assert sorted(declared) == sorted(kernel_compile.KERNEL_NAMES)


@needs_nvrtc
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", kernel_compile.KERNEL_FILES)
def test_each_source_compiles_with_nvrtc(name, arch, cache):
    cubin = kernel_compile.compile_cubin(arch, (name,), cache=False)
    assert cubin[:4] == b"\x7fELF"


@needs_nvrtc
@pytest.mark.parametrize("arch", ARCHS)
def test_module_compiles_and_is_cached(arch, cache, monkeypatch):
    cubin = kernel_compile.compile_cubin(arch)
    assert cubin[:4] == b"\x7fELF"
    for name in kernel_compile.KERNEL_NAMES:  # extern "C": the symbol is the plain name
        assert name.encode() + b"\0" in cubin, name
    assert [p.name.startswith(arch) for p in cache.iterdir()] == [True]

    def no_compile(*args):
        raise AssertionError("compiled again despite the cache")

    monkeypatch.setattr(kernel_compile, "_nvrtc_compile", no_compile)
    assert kernel_compile.compile_cubin(arch) == cubin


@needs_nvrtc
def test_compile_error_is_reported(tmp_path, monkeypatch):
    (tmp_path / "bad.cu").write_text('extern "C" __global__ void bad() { undefined_thing(); }\n')
    monkeypatch.setattr(kernel_compile, "source_dir", lambda: tmp_path)
    with pytest.raises(kernel_compile.KernelError, match="undefined_thing"):
        kernel_compile.compile_cubin("sm_90", ("bad.cu",), cache=False)


@needs_nvrtc
def test_arch_for_capability():
    assert kernel_compile.arch_for_capability(9, 0) == "sm_90"
    assert kernel_compile.arch_for_capability(8, 6) == "sm_86"
    assert kernel_compile.arch_for_capability(8, 9) == "sm_89"
    with pytest.raises(kernel_compile.KernelError):
        kernel_compile.arch_for_capability(1, 0)


@pytest.mark.skipif(NVCC is None, reason="nvcc not installed")
@pytest.mark.parametrize("name", [*kernel_compile.KERNEL_FILES, "launch.cu"])
def test_each_source_compiles_with_nvcc(name, tmp_path):
    src = kernel_compile.source_dir()
    cmd = [NVCC, "-arch=sm_90", "-std=c++17", "-c", f"-I{src}", str(src / name), "-o", str(tmp_path / "k.o")]
    result = subprocess.run(cmd, check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _cmake(*args, cwd=None):
    result = subprocess.run([CMAKE, *args], check=False, capture_output=True, text=True, cwd=cwd)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


@pytest.mark.skipif(CMAKE is None or NVCC is None, reason="cmake or nvcc not installed")
def test_cmake_builds_the_library(tmp_path):
    """`cmake -S kernels -B build && cmake --build build`, default architectures (80;86;89;90)."""
    _cmake("-S", str(kernel_compile.source_dir()), "-B", str(tmp_path), f"-DCMAKE_CUDA_COMPILER={NVCC}")
    _cmake("--build", str(tmp_path), "-j2")
    assert (tmp_path / "libdcrt_kernels.a").is_file()


HOST_MAIN = r"""#include <dcrt_kernels.h>
#include <cstdio>
int main() {
    cudaError_t (*volatile launch)(int*, cudaStream_t) = dcrt_launch_ddim_advance;  // linked, not run
    std::printf("%zu\n", dcrt_cfg_workspace_bytes(163840, 1));
    return launch == nullptr;
}
"""


@pytest.mark.skipif(CMAKE is None or NVCC is None, reason="cmake or nvcc not installed")
def test_cmake_host_links_the_launchers(tmp_path):
    """A C++ (not CUDA) host project: add_subdirectory(kernels), link dcrt::kernels and the launchers."""
    (tmp_path / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.18)\nproject(host LANGUAGES CXX)\n"
        f'add_subdirectory("{kernel_compile.source_dir()}" kernels)\n'
        "add_executable(host main.cpp)\ntarget_link_libraries(host PRIVATE dcrt::kernels)\n"
    )
    (tmp_path / "main.cpp").write_text(HOST_MAIN)
    build = tmp_path / "build"
    _cmake("-S", str(tmp_path), "-B", str(build), f"-DCMAKE_CUDA_COMPILER={NVCC}", "-DDCRT_CUDA_ARCHITECTURES=90")
    _cmake("--build", str(build), "-j2")
    out = subprocess.run([str(build / "host")], check=False, capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout.strip() == str(8 * 4 * kernels.cfg_num_partials(163840))  # runs even without a driver


# --- GPU runs against the references --------------------------------------------------------------

gpu = pytest.mark.gpu
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# half and bfloat16 inputs convert exactly: the same float32 arithmetic as the reference
TOL = {torch.float32: 1e-6, torch.float16: 1e-6, torch.bfloat16: 1e-6}


@pytest.fixture(scope="module")
def k():
    if not torch.cuda.is_available() or torch.cuda.device_count() == 0:
        pytest.skip("no CUDA device")
    return kernels.Kernels()


def _randn(*shape, dtype=torch.float32, scale=1.0):
    return (torch.randn(*shape) * scale).to(dtype)


def _nan(*shape):
    return torch.full(shape, float("nan"), device="cuda")


def _close(actual, expected, tol):
    torch.testing.assert_close(actual.cpu(), expected, rtol=tol, atol=tol)


SCHEDULES = {
    "v": DiffusionConfig(),
    "eps": DiffusionConfig(parameterization="eps", zero_snr=False, dynamic_rescale=False),
}


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("model", SCHEDULES)
@pytest.mark.parametrize("with_noise", [True, False])
def test_ddim_update(k, dtype, model, with_noise):
    cfg = SCHEDULES[model]
    schedule = build_ddim_schedule(schedule_tensors(cfg), cfg, 50, "uniform_trailing", 1.0)
    coefs = schedule.table().cuda()
    shape = (1, 4, 16, 8, 10)
    for i in (49, 48, 19, 1, 0):
        x, m = _randn(*shape), _randn(*shape, dtype=dtype)
        noise = _randn(*shape) if with_noise else None
        out = _nan(*shape)
        step = torch.tensor([i], dtype=torch.int32, device="cuda")
        k.ddim_update(out, x.cuda(), m.cuda(), None if noise is None else noise.cuda(), coefs, step)
        _close(out, ddim_step(x, m.float(), noise, schedule.at(i)), TOL[dtype])


@gpu
def test_ddim_bad_step_gives_nan(k):
    coefs = torch.ones(8, 5, device="cuda")
    out = torch.zeros(1000, device="cuda")
    x = torch.ones(1000, device="cuda")
    k.ddim_update(out, x, x, None, coefs, torch.tensor([5], dtype=torch.int32, device="cuda"))
    assert out.isnan().all()


@gpu
def test_ddim_graph_replay(k):
    """The whole loop as one captured step (timestep, update in place, advance), replayed S times."""
    cfg = SCHEDULES["v"]
    schedule = build_ddim_schedule(schedule_tensors(cfg), cfg, 10, "uniform_trailing", 0.0)
    coefs, timesteps = schedule.table().cuda(), schedule.timesteps.cuda()
    x0, m = _randn(1, 4, 16, 8, 10), _randn(1, 4, 16, 8, 10)
    x, m_dev = x0.cuda(), m.cuda()
    step = torch.tensor([schedule.num_steps - 1], dtype=torch.int32, device="cuda")
    t = torch.full((3,), -1, dtype=torch.int64, device="cuda")
    seen = []
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        k.ddim_timestep(t, timesteps, step)
        k.ddim_update(x, x, m_dev, None, coefs, step)
        k.ddim_advance(step)
    expected = x0
    for i in reversed(range(schedule.num_steps)):
        graph.replay()
        seen.append(t.cpu().tolist())
        expected = ddim_step(expected, m, None, schedule.at(i))
    torch.cuda.synchronize()
    assert seen == [[int(schedule.timesteps[i])] * 3 for i in reversed(range(schedule.num_steps))]
    assert step.item() == -1
    _close(x, expected, 1e-5)


GUIDANCES = {
    "single": Guidance(guidance_scale=1.0),
    "two": Guidance(guidance_scale=7.5),
    "two-rescale": Guidance(guidance_scale=7.5, guidance_rescale=0.7),
    "three": Guidance(guidance_scale=7.5, image_guidance_scale=2.0),
    "three-rescale": Guidance(guidance_scale=7.5, image_guidance_scale=2.0, guidance_rescale=0.7),
}


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", GUIDANCES)
@pytest.mark.parametrize("batch,sample", [(1, (4, 16, 40, 64)), (2, (4, 3, 7, 11))])
def test_cfg_combine(k, dtype, name, batch, sample):
    guidance = GUIDANCES[name]
    out = _randn(guidance.branches * batch, *sample, dtype=dtype, scale=2.0) + 0.1
    n = int(np.prod(sample))
    workspace = kernels.cfg_workspace(n, batch, "cuda").fill_(float("nan"))
    guided = _nan(batch, *sample)
    k.cfg_combine(guided, out.cuda(), guidance, workspace)
    tol = 2e-5 if guidance.guidance_rescale > 0 else TOL[dtype]  # the std: double sums vs torch's float32 algorithm
    _close(guided, combine_guidance(out, guidance), tol)


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_frames_to_u8(k, dtype):
    video = _randn(5, 3, 17, 23, scale=0.8)
    video.view(-1)[:6] = torch.tensor([-1.0, 1.0, -1.5, 1.5, 0.0, 2.0 / 255.0 - 1.0])  # clamp edges, exact values
    video = video.to(dtype)
    for poison in (0xFF, 0x00):  # both: an unwritten byte would pass where the answer is the poison
        frames = torch.full((5, 17, 23, 3), poison, dtype=torch.uint8, device="cuda")
        k.frames_to_u8(frames, video.cuda())
        np.testing.assert_array_equal(frames.cpu().numpy(), to_uint8_frames(video))


@gpu
def test_image_u8_to_f32(k):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 17, 23, 3), dtype=np.uint8)
    images[0, 0, 0] = (0, 255, 128)
    dst = _nan(2, 3, 17, 23)
    k.image_u8_to_f32(dst, torch.from_numpy(images).cuda())
    expected = torch.cat([load_image(im, 17, 23) for im in images])  # already at size: the pixel mapping alone
    _close(dst, expected, 0.0)


@gpu
def test_clip_normalize(k):
    cfg = ImageEncoderConfig()
    src = torch.rand(2, 3, 224, 224) * 2 - 1
    expected = clip_normalize(src, cfg)  # the input is already resized
    dst = _nan(2, 3, 224, 224)
    k.clip_normalize(dst, src.cuda(), cfg.mean, cfg.std)
    _close(dst, expected, 1e-6)
    inplace = src.cuda()
    k.clip_normalize(inplace, inplace, cfg.mean, cfg.std)
    _close(inplace, expected, 1e-6)
