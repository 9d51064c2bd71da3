"""AOTInductor packages of Stable Video Diffusion (tiny-svd), built once per session by `dcrt build --engine aoti`
(the `aoti_tiny_svd_bundle` fixture): the manifest (no schedule file: SVD's EDM schedule is the preset's), parity
with PyTorch per component and end to end, the command line, and the errors a run can meet.

The tests on that bundle are marked heavy (`-m heavy`; its five packages take minutes of g++ on 2 cores): in the
default run, the AOTInductor runtime is proven on the tiny bundle (tests/backends/test_aoti.py) and SVD's static
graphs on ONNX Runtime (tests/families/svd/)."""

import json

import numpy as np
import pytest
import torch
from conftest import GRAPH_TOLERANCE, sampling_tolerance

import dcrt
from dcrt.artifacts.export import relative_error
from dcrt.artifacts.graphs import io_table, sample_inputs
from dcrt.backends.aoti_backend import AotiGraphs, open_aoti
from dcrt.errors import UsageError
from dcrt.families.dynamicrafter.static import StaticShapeBackend
from dcrt.families.svd.options import resolve_svd_options
from dcrt.families.svd.pipeline import SVDPipeline
from dcrt.families.svd.static import StaticSVDBackend
from dcrt.families.svd.torch_backend import TorchSVDBackend

pytestmark = pytest.mark.aoti
TINY_SVD = dcrt.get_preset("tiny-svd")
BOUND = GRAPH_TOLERANCE  # fp32 packages, one call: float reassociation along the graph's chain


@pytest.fixture(scope="module")
def svd_model():
    return dcrt.random_svd_model("tiny-svd", seed=0)  # the weights `dcrt build` uses without a checkpoint


@pytest.fixture(scope="module")
def backend(aoti_tiny_svd_bundle):
    return open_aoti(aoti_tiny_svd_bundle)


@pytest.mark.heavy
def test_bundle_has_a_package_per_graph_and_no_schedule(aoti_tiny_svd_bundle):
    data = json.loads((aoti_tiny_svd_bundle / "manifest.json").read_text())
    assert (data["preset"], data["source"], data["schedule"]) == ("tiny-svd", "random:tiny-svd:seed0", {})
    specs = io_table(TINY_SVD)
    graphs = ["image_encoder", "vae_encoder", "unet", "vae_decoder", "vae_decoder_tail"]
    assert list(data["engines"]) == list(specs) == graphs
    for name, spec in specs.items():
        entry = data["engines"][name]
        assert entry["inputs"] == [t.as_dict() for t in spec.inputs] and entry["parity"]["rel_error"] < BOUND
    files = sorted(p.name for p in aoti_tiny_svd_bundle.iterdir())
    assert files == sorted(["manifest.json", *(f"{n}.pt2" for n in specs)])  # nothing else, no temporaries


@pytest.mark.heavy
def test_each_package_matches_pytorch(backend, svd_model):
    ref = TorchSVDBackend(svd_model)
    assert isinstance(backend, StaticSVDBackend) and backend.decode_chunks == (4,)
    g = torch.Generator().manual_seed(3)  # not the build's check inputs
    pixels, frames = torch.randn(2, 3, 224, 224, generator=g), torch.rand(1, 3, 64, 64, generator=g) * 2 - 1
    x, c_noise, context, ids = sample_inputs(io_table(TINY_SVD)["unet"], TINY_SVD, seed=4)
    z = torch.randn(6, 4, 8, 8, generator=g)
    pairs = {
        "image_encoder (2 images)": (backend.encode_image(pixels), ref.encode_image(pixels)),
        "vae_encoder": (backend.encode_latents(frames), ref.encode_latents(frames)),
        "unet, batch 2": (backend.unet(x, c_noise, context, ids).clone(), ref.unet(x, c_noise, context, ids)),
        "unet, batch 1": (
            backend.unet(x[:1], c_noise[:1], context[:1], ids[:1]),
            ref.unet(x[:1], c_noise[:1], context[:1], ids[:1]),
        ),
        "vae_decoder (4)": (backend.decode_latents(z[:4]).clone(), ref.decode_latents(z[:4])),
        "vae_decoder_tail (2)": (backend.decode_latents(z[4:]), ref.decode_latents(z[4:])),
    }
    for name, (ours, expected) in pairs.items():
        error = relative_error(ours, expected)
        print(f"{name}: AOTInductor vs torch {error:.2e}")
        assert error < BOUND, name
    with pytest.raises(UsageError, match=r"chunks of \[2, 4\] frames, not 3"):
        backend.decode_latents(z[:3])


@pytest.mark.heavy
def test_the_pipeline_matches_torch(backend, svd_model):
    picture = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    opts = resolve_svd_options(TINY_SVD, steps=3, seed=5)
    ours = SVDPipeline(backend).generate(picture, opts)
    expected = SVDPipeline(TorchSVDBackend(svd_model)).generate(picture, opts)
    error = relative_error(ours.latents, expected.latents)
    levels = np.abs(ours.frames.astype(np.int16) - expected.frames.astype(np.int16)).max()
    print(f"end to end, 3 steps: latents {error:.2e}, frames within {levels} level(s)")
    # Euler steps under guidance rising to the preset's max_guidance_scale amplify a UNet difference as DDIM's do
    assert error < sampling_tolerance(3, opts.max_guidance_scale) and levels <= 1


@pytest.mark.heavy
def test_cli_animate_runs_the_packages(aoti_tiny_svd_bundle, tmp_path, run_cli):
    from PIL import Image

    root = str(aoti_tiny_svd_bundle.parents[1])
    code, out, err = run_cli(["build", "--res", "tiny-svd", "--engine", "aoti", "--out", root])
    assert code == 0 and out.strip() == str(aoti_tiny_svd_bundle) and err.count("up to date") == 5, err
    Image.new("RGB", (80, 60), (200, 30, 30)).save(tmp_path / "in.png")
    args = ["animate", str(tmp_path / "in.png"), "--res", "tiny-svd", "--steps", "2", "--random-weights"]
    code, _, err = run_cli([*args, "--engines", root, "--backend", "aoti", "-o", str(tmp_path / "o.mp4")])
    assert code == 0 and f"using aoti on cpu with {aoti_tiny_svd_bundle}" in err, err
    assert (tmp_path / "o.mp4").stat().st_size > 1000
    code, _, err = run_cli([*args, "--engines", root, "--device", "cpu", "-o", str(tmp_path / "p.mp4")])
    assert code == 0 and "using aoti on cpu" in err, err  # auto finds it too


@pytest.mark.heavy
def test_an_svd_bundle_is_refused_by_the_dynamicrafter_backend(aoti_tiny_svd_bundle, tmp_path, run_cli):
    with pytest.raises(UsageError, match="tiny-svd does not support StaticShapeBackend"):
        StaticShapeBackend(AotiGraphs(aoti_tiny_svd_bundle))
    from PIL import Image

    Image.new("RGB", (64, 64)).save(tmp_path / "in.png")
    args = ["animate", str(tmp_path / "in.png"), "x", "--res", "tiny", "--steps", "2", "--backend", "aoti"]
    code, _, err = run_cli([*args, "--engines", str(aoti_tiny_svd_bundle.parents[1]), "-o", str(tmp_path / "o.mp4")])
    assert code == 2 and err.count("\n") == 1 and "dcrt build --res tiny --engine aoti" in err, err
    assert not (tmp_path / "o.mp4").exists()


def test_a_dynamicrafter_bundle_is_refused_for_tiny_svd(aoti_tiny_bundle, tmp_path, run_cli):
    with pytest.raises(UsageError, match="tiny does not support StaticSVDBackend"):
        StaticSVDBackend(AotiGraphs(aoti_tiny_bundle))
    assert isinstance(open_aoti(aoti_tiny_bundle), StaticShapeBackend)
    from PIL import Image

    Image.new("RGB", (64, 64)).save(tmp_path / "in.png")
    args = ["animate", str(tmp_path / "in.png"), "--res", "tiny-svd", "--steps", "2", "--random-weights"]
    code, _, err = run_cli([*args, "--engines", str(aoti_tiny_bundle.parents[1]), "--backend", "aoti", "-o", "o.mp4"])
    assert code == 2 and err.count("\n") == 1 and "dcrt build --res tiny-svd --engine aoti" in err, err


@pytest.mark.parametrize("engine", ["aoti", "trt"])
def test_build_at_another_size_is_one_line(engine, run_cli, tmp_path):
    # SVD's pipeline runs at the preset's size: graphs of another size could never be used
    args = ["build", "--res", "tiny-svd", "--engine", engine, "--height", "128", "--out", str(tmp_path / "e")]
    code, _, err = run_cli(args)
    assert code == 2 and err.strip() == "dcrt: error: tiny-svd is built at its own size, 64x64"
    assert not (tmp_path / "e").exists()
