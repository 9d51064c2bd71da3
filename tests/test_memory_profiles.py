"""`--memory`: every profile gives `fast`'s pictures, places the networks where dcrt.memory says, and `auto` picks
the profile the free memory allows.

What a profile changes, and so how closely its pictures must match `fast`'s (tiny presets, fp32, the CPU):
- offloading (the networks' placement) and transformer blocks in token pieces (each sequence is computed alone in
  a block either way) change only where and when the same ops run: the latents are bitwise equal;
- `unet_batch=1` (low) runs the guidance branches as separate UNet calls: the kernels see another batch and may
  round in another order, so the latents are held to `sampling_tolerance` (conftest: one UNet evaluation's fp32
  bound, GRAPH_OPS x eps, times the guidance weights and the steps that carry it into the latents);
- `decode_chunk` (frames per image-decoder call, 4 in fast, 1 in balanced and low) does the same to the decoder:
  a pixel's value moves by far less than one uint8 level, so a frame may differ by one level where rounding
  falls on the other side, never more. The temporal decoders (ToonCrafter's dual-ref clip, SVD) take the clip in
  one call in every profile, and `frame_pieces` runs their per-frame layers (convolutions whose batch is the
  frames) over pieces: the same bound, for the same reason.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from _cuda_fakes import DEVICE, fake_model, simulated_cuda
from conftest import sampling_tolerance

import dcrt
import dcrt.loading
import dcrt.models.attention
import dcrt.models.svd_unet
from dcrt.errors import UsageError
from dcrt.families.common import VideoResult
from dcrt.families.dynamicrafter.options import resolve_options
from dcrt.families.dynamicrafter.pipeline import Pipeline
from dcrt.families.dynamicrafter.torch_backend import TorchBackend
from dcrt.families.svd.options import resolve_svd_options
from dcrt.families.svd.pipeline import SVDPipeline
from dcrt.families.svd.torch_backend import TorchSVDBackend
from dcrt.memory import BALANCED, FAST, LOW, MemoryProfile, PeakEstimate, choose_profile
from dcrt.models.dynamicrafter import DynamiCrafter
from dcrt.models.svd import StableVideoDiffusion

STEPS = 2
# Tiny presets run 64 x 64: the largest block batch is 2 branches x 16 frames x 64 tokens = 2048 tokens, under every
# profile's piece. 256 tokens makes the pieces split: 4 sequences of 64 pixels, or 16 of 16 frames.
PIECE = 256
PROFILES = {
    "balanced-in-pieces": dataclasses.replace(BALANCED, token_chunk=PIECE),
    "low-in-pieces": dataclasses.replace(LOW, token_chunk=PIECE),
    "low": LOW,
}
# (preset, task, sampling keywords): every task, ToonCrafter's dual-ref decoder, and a video longer than one window.
DYNAMICRAFTER_RUNS = {
    "animate": ("tiny", "animate", {}),
    "interpolate": ("tiny", "interpolate", {}),
    "loop": ("tiny-256", "loop", {}),
    "tooncrafter": ("tiny-tooncrafter", "interpolate", {}),
    "long-video": ("tiny", "animate", {"frames": 32}),
}


def _picture(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)


@pytest.fixture
def pieces(monkeypatch) -> list[bool]:
    """Each transformer block call, True where it ran in more than one piece (a spy on `in_token_pieces`)."""
    calls: list[bool] = []
    real = dcrt.models.attention.in_token_pieces

    def spy(block, x, context, token_chunk):
        calls.append(token_chunk is not None and max(1, token_chunk // x.shape[1]) < x.shape[0])
        return real(block, x, context, token_chunk)

    for module in (dcrt.models.attention, dcrt.models.svd_unet):
        monkeypatch.setattr(module, "in_token_pieces", spy)
    return calls


def _dynamicrafter_video(run: str, memory: MemoryProfile):
    """A fresh seeded model per run (a profile sets the UNet's token pieces on the model it is given): (the video,
    its options, a function that decodes given latents with this profile's pipeline and this run's references)."""
    preset, task, keywords = DYNAMICRAFTER_RUNS[run]
    model = dcrt.random_model(preset, seed=0)
    opts = resolve_options(model.preset, task, steps=STEPS, seed=7, **keywords)
    images = [_picture(1), _picture(2)] if task == "interpolate" else [_picture(1)]
    pipeline = Pipeline(TorchBackend(model, memory))
    latents, references = pipeline.sample(images, "a cat", task, opts)
    video = VideoResult(latents, np.concatenate(list(pipeline.decoded_chunks(latents, task, references))))
    return video, opts, lambda z: np.concatenate(list(pipeline.decoded_chunks(z, task, references)))


def _svd_video(memory: MemoryProfile):
    model = dcrt.random_svd_model("tiny-svd", seed=0)
    opts = resolve_svd_options(model.preset, steps=STEPS)
    pipeline = SVDPipeline(TorchSVDBackend(model, memory))
    video = pipeline.generate(_picture(1), opts)
    return video, opts, lambda z: np.concatenate(list(pipeline.decoded_chunks(z, opts)))


@pytest.fixture(scope="module")
def fast_videos() -> dict:
    """`fast`'s video of each run, made once."""
    videos = {run: _dynamicrafter_video(run, FAST)[0] for run in DYNAMICRAFTER_RUNS}
    return videos | {"svd": _svd_video(FAST)[0]}


def _assert_same_pictures(
    video, decode, fast, memory: MemoryProfile, latent_tolerance: float, temporal_decoder: bool
) -> None:
    """Bitwise where only the schedule of work changed (module docstring); else within the stated bounds, each
    stage on its own: the latents against fast's, and the decoder on fast's own latents against fast's frames
    (so a latent difference within its bound is not counted again, amplified, in the frames)."""
    latents_bitwise = memory.unet_batch is None  # the guidance branches in one UNet call, as fast runs them
    if latents_bitwise:
        assert torch.equal(video.latents, fast.latents)
    else:
        error = ((video.latents - fast.latents).norm() / fast.latents.norm()).item()
        assert error < latent_tolerance, error
    if temporal_decoder:  # the clip in one call, its per-frame layers in pieces of `frame_pieces` frames
        same_decoder_calls = memory.frame_pieces == FAST.frame_pieces
    else:
        same_decoder_calls = memory.decode_chunk == FAST.decode_chunk
    frames = video.frames if latents_bitwise else decode(fast.latents)
    assert frames.shape == fast.frames.shape
    if same_decoder_calls:
        assert np.array_equal(frames, fast.frames)
    else:
        assert np.abs(frames.astype(np.int16) - fast.frames.astype(np.int16)).max() <= 1


# Every switch on every run would take minutes: each run meets low (every switch at once) in pieces, the tasks
# that decode differently (animate's image decoder, ToonCrafter's clip) meet balanced in pieces, and animate meets
# the profile as shipped (at 64 x 64 its pieces do not split).
PAIRS = [(run, "low-in-pieces") for run in DYNAMICRAFTER_RUNS] + [
    ("animate", "balanced-in-pieces"),
    ("tooncrafter", "balanced-in-pieces"),
    ("animate", "low"),
]


@pytest.mark.parametrize(("run", "profile"), PAIRS)
def test_every_profile_gives_fasts_pictures(run, profile, fast_videos, pieces):
    memory = PROFILES[profile]
    video, opts, decode = _dynamicrafter_video(run, memory)
    tolerance = sampling_tolerance(STEPS, opts.guidance_scale, None, opts.guidance_rescale)
    temporal_decoder = dcrt.get_preset(DYNAMICRAFTER_RUNS[run][0]).vae.dual_ref is not None
    _assert_same_pictures(video, decode, fast_videos[run], memory, tolerance, temporal_decoder)
    assert any(pieces) == (memory.token_chunk == PIECE)  # the pieces really split, and only when asked to


@pytest.mark.parametrize("profile", ["balanced-in-pieces", "low-in-pieces"])
def test_every_profile_gives_fasts_svd_pictures(profile, fast_videos, pieces):
    memory = PROFILES[profile]
    video, opts, decode = _svd_video(memory)
    tolerance = sampling_tolerance(STEPS, opts.max_guidance_scale)
    _assert_same_pictures(video, decode, fast_videos["svd"], memory, tolerance, True)
    assert any(pieces) == (memory.token_chunk == PIECE)


# --- placement on a simulated CUDA device ------------------------------------------------------------------------


def _cpu_model(cuda, network: type, preset: str):
    """Fake fp16 weights in host memory: an offloading profile's model is loaded on the CPU."""
    return fake_model(network, preset, torch.float16, cuda.fake, "cpu")


def _record_placements(model) -> list[tuple[str, dict[str, str]]]:
    """(network, where every network is) each time a module of `network` runs."""
    seen: list[tuple[str, dict[str, str]]] = []
    for name in model.networks:
        for module in getattr(model, name).modules():
            module.register_forward_pre_hook(
                lambda module, args, name=name: seen.append(
                    (name, {n: str(model.device_of(n)) for n in model.networks})
                )
            )
    return seen


def test_low_puts_each_network_on_the_device_only_while_it_runs():
    preset = dcrt.get_preset("tiny")
    opts = resolve_options(preset, steps=STEPS, seed=7)
    with simulated_cuda() as cuda:
        model = _cpu_model(cuda, DynamiCrafter, "tiny")
        seen = _record_placements(model)
        Pipeline(TorchBackend(model, LOW, device=DEVICE)).generate([_picture(1)], "a cat", "animate", opts)
        assert {name for name, _ in seen} == set(model.networks)
        for name, where in seen:
            assert where[name] == str(DEVICE), name
            resident = {n for n, d in where.items() if d != "cpu"}
            assert resident <= {name, "image_encoder", "resampler"}, (name, where)  # run together: encode_image
        for name in model.networks:
            assert all(p.device.type == "cpu" for p in getattr(model, name).parameters()), name


@pytest.mark.parametrize("memory", [BALANCED, LOW], ids=lambda m: m.name)
@pytest.mark.parametrize("preset_name", ["tiny", "tiny-tooncrafter"])
def test_offloading_profiles_generate_on_simulated_cuda(preset_name, memory):
    """balanced keeps the UNet on the device, so the loop is captured once and replayed; low moves it, so the loop
    runs eagerly (a graph captured on one copy of the weights cannot run on the next)."""
    preset = dcrt.get_preset(preset_name)
    task = preset.modes[0]
    opts = resolve_options(preset, task, steps=STEPS, seed=7)
    images = [_picture(1)] * (2 if task == "interpolate" else 1)
    with simulated_cuda() as cuda:
        model = _cpu_model(cuda, DynamiCrafter, preset_name)
        result = Pipeline(TorchBackend(model, memory, device=DEVICE)).generate(images, "a cat", task, opts)
        assert result.latents.device == DEVICE and result.frames.shape == (opts.frames, opts.height, opts.width, 3)
        assert [(g.captures, g.replays) for g in cuda.graphs] == ([(1, STEPS)] if memory is BALANCED else [])
        assert str(model.device_of("unet")) == (str(DEVICE) if memory is BALANCED else "cpu")
        assert str(model.device_of("vae")) == "cpu"


@pytest.mark.parametrize("memory", [BALANCED, LOW], ids=lambda m: m.name)
def test_offloading_profiles_generate_svd_on_simulated_cuda(memory):
    preset = dcrt.get_preset("tiny-svd")
    opts = resolve_svd_options(preset, steps=STEPS)
    with simulated_cuda() as cuda:
        model = _cpu_model(cuda, StableVideoDiffusion, "tiny-svd")
        result = SVDPipeline(TorchSVDBackend(model, memory, device=DEVICE)).generate(_picture(1), opts)
        assert result.latents.device == DEVICE and result.frames.shape == (preset.frames, 64, 64, 3)
        assert [(g.captures, g.replays) for g in cuda.graphs] == ([(1, STEPS)] if memory is BALANCED else [])
        assert str(model.device_of("image_encoder")) == "cpu"


@pytest.mark.parametrize("memory", [FAST, BALANCED, LOW], ids=lambda m: m.name)
def test_a_pipeline_captures_its_loop_unless_the_unet_leaves_the_device(memory):
    """fast and balanced keep the UNet on the device: the loop is captured; low moves it: the eager loop."""
    with simulated_cuda() as cuda:
        model = _cpu_model(cuda, DynamiCrafter, "tiny")
        svd = _cpu_model(cuda, StableVideoDiffusion, "tiny-svd")
        pipeline = Pipeline(TorchBackend(model, memory, device=DEVICE))
        svd_pipeline = SVDPipeline(TorchSVDBackend(svd, memory, device=DEVICE))
        assert pipeline.capture == svd_pipeline.cuda_graph == (memory is not LOW)
        assert str(model.device_of("unet")) == ("cpu" if memory is LOW else str(DEVICE))
        assert str(model.device_of("text_encoder")) == ("cpu" if memory.offload else str(DEVICE))


# --- auto ------------------------------------------------------------------------------------------------------

GIB = 2**30
# Made-up peaks for tiny in fp16 at 64 x 64 x 16: fast 10 GiB, balanced 6 GiB, low 3 GiB.
ESTIMATES = {
    "tiny": {
        "fp16": {
            name: PeakEstimate(resident_bytes=resident * GIB, activation_bytes=activation * GIB, pixels=64 * 64 * 16)
            for name, resident, activation in (("fast", 6, 4), ("balanced", 4, 2), ("low", 1, 2))
        }
    }
}


@pytest.mark.parametrize(
    "free_gib, profile, says",
    [(40, "fast", "fits"), (8, "balanced", "fits"), (5, "low", "fits"), (2, "low", "may not fit")],
)
def test_auto_takes_the_fastest_profile_that_fits_the_free_memory(free_gib, profile, says):
    choice = choose_profile("auto", "tiny", "fp16", free_gib * GIB, (64, 64, 16), ESTIMATES)
    assert choice.profile.name == profile and says in choice.reason


def test_auto_scales_the_activations_with_the_size():
    """Twice the frames: balanced's 4 + 2 x 2 GiB no longer fits in 8 GiB."""
    assert choose_profile("auto", "tiny", "fp16", 8 * GIB, (64, 64, 32), ESTIMATES).profile is LOW


def test_auto_on_the_cpu_is_fast_and_the_log_line_names_it():
    lines: list[str] = []
    choice = dcrt.loading.resolve_memory("auto", "tiny", "fp32", "cpu", (64, 64, 16), lines.append)
    assert choice.profile is FAST
    assert lines == [f"memory: fast (auto on the CPU: host memory is not budgeted): {FAST.summary}"]


def test_auto_on_cuda_reads_the_free_memory_and_the_estimates(monkeypatch):
    monkeypatch.setattr(dcrt.loading, "free_device_memory", lambda device: 8 * GIB)
    monkeypatch.setattr("dcrt.memory.load_estimates", lambda: ESTIMATES)
    lines: list[str] = []
    choice = dcrt.loading.resolve_memory("auto", "tiny", "fp16", "cuda", (64, 64, 16), lines.append)
    assert choice.profile is BALANCED and len(lines) == 1 and lines[0].startswith("memory: balanced (auto: estimated")


def test_auto_without_an_estimates_file_is_fast(monkeypatch):
    def missing():
        raise FileNotFoundError("memory_estimates.json")

    monkeypatch.setattr(dcrt.loading, "free_device_memory", lambda device: 8 * GIB)
    monkeypatch.setattr("dcrt.memory.load_estimates", missing)
    lines: list[str] = []
    assert dcrt.loading.resolve_memory("auto", "tiny", "fp16", "cuda", (64, 64, 16), lines.append).profile is FAST
    assert "no estimates file" in lines[0]


# --- opening a backend -------------------------------------------------------------------------------------------


def test_open_backend_builds_the_torch_backend_with_the_profile():
    messages: list[str] = []
    backend = dcrt.open_backend("tiny", backend="torch", memory="low", log=messages.append)
    assert backend.memory is LOW and set(backend.placement.offloaded) == set(backend.model.networks)
    assert f"memory: low (asked for): {LOW.summary}" in messages
    assert messages[-1].startswith("using torch on cpu")  # the backend's summary stays the last line


def test_fp8_weights_are_stored_by_the_torch_backend_that_auto_then_chooses():
    messages: list[str] = []
    backend = dcrt.open_backend("tiny", weight_storage="fp8", memory="fast", log=messages.append)
    assert isinstance(backend, TorchBackend)
    assert "notice: --weights fp8: only the torch backend honours it, so auto passes over" in " ".join(messages)
    codes = [t for n, t in backend.model.unet.named_parameters() if "parametrizations" in n]
    assert codes and {t.dtype for t in codes} >= {torch.float8_e4m3fn}
    opts = resolve_options(backend.preset, steps=1, seed=7)
    video = Pipeline(backend).generate([_picture(1)], "a cat", "animate", opts)
    assert torch.isfinite(video.latents).all()


def test_torch_backend_gives_a_loaded_model_a_profile():
    backend = dcrt.torch_backend(dcrt.random_model("tiny", seed=0), memory="balanced")
    assert isinstance(backend, TorchBackend) and backend.memory is BALANCED


def test_auto_backend_with_a_torch_only_profile_chooses_torch_with_a_notice(tmp_path):
    from dcrt.backends.machine_facts import probe
    from dcrt.backends.select import choose_backend, torch_only_flags

    preset, facts = dcrt.get_preset("tiny"), probe()
    plain = choose_backend(preset, "auto", tmp_path / "engines", tmp_path / "export", facts)
    low_request = torch_only_flags("low")
    low = choose_backend(preset, "auto", tmp_path / "engines", tmp_path / "export", facts, torch_only=low_request)
    assert low.name == "torch" and any("only the torch backend honours it" in n for n in low.notices)
    assert "no export" in plain.reason and "no export" not in low.reason  # the static candidates were not tried


@pytest.mark.parametrize("backend", ["trt", "aoti", "ort"])
def test_a_static_backend_refuses_a_torch_only_profile(backend):
    for memory in ("balanced", "low"):
        with pytest.raises(UsageError, match="only by the torch backend"):
            dcrt.BackendRequest(preset="tiny", backend=backend, memory=memory).check_names()
    for memory in ("auto", "fast"):  # runs as built
        dcrt.BackendRequest(preset="tiny", backend=backend, memory=memory).check_names()


def test_an_unknown_profile_is_refused():
    with pytest.raises(UsageError, match="unknown memory profile 'bogus'"):
        dcrt.BackendRequest(memory="bogus").check_names()


def test_a_video_decoder_block_frees_a_handed_over_input_before_its_temporal_part():
    """run_up_levels hands each block its input in a list: the block drops it once its per-frame part has read it,
    so the input (2 GiB at SVD's full resolution) is gone while the temporal part runs."""
    import weakref

    from dcrt.models.vae_dualref import VideoResnetBlock

    block = VideoResnetBlock(32, 32, kernel=3).eval()
    x = torch.randn(4, 32, 8, 8)
    alive: list[bool] = []
    ref = weakref.ref(x)
    block.time_stack.register_forward_pre_hook(lambda *_: alive.append(ref() is not None))
    with torch.inference_mode():
        whole = block(x.clone())
        held, x = [x], None
        handed = block(held)
    assert alive == [True, False] and torch.equal(handed, whole)
