"""AOTInductor packages of the tiny preset, built once per session by `dcrt build --engine aoti` (the
`aoti_tiny_bundle` fixture): the manifest contract, parity with PyTorch per component and end to end, the
command line, staleness and the errors a run or a build can meet."""

import json
import re
import shutil

import numpy as np
import pytest
import torch
from conftest import AOTI_BUILD_LOG, GRAPH_TOLERANCE, sampling_tolerance

import dcrt
from dcrt.artifacts.aoti_build import AotiConfig, build_aoti_bundle, plan_build
from dcrt.artifacts.aoti_bundle import PORTABLE_ISA, AotiManifest, AotiTarget, detect_aoti_target
from dcrt.artifacts.export import graph_modules, relative_error
from dcrt.artifacts.graphs import io_table, sample_inputs
from dcrt.backends.aoti_backend import call_package, load_package, open_aoti
from dcrt.errors import UsageError
from dcrt.families.dynamicrafter.torch_backend import TorchBackend
from dcrt.weights import Weights

pytestmark = pytest.mark.aoti
TINY = dcrt.get_preset("tiny")


@pytest.fixture(scope="module")
def aoti_backend(aoti_tiny_bundle):
    return open_aoti(aoti_tiny_bundle)


def test_bundle_follows_the_contract(aoti_tiny_bundle):
    # docs/bundles.md, "AOTInductor bundles": what a C++ host reads, with no Python at run time
    data = json.loads((aoti_tiny_bundle / "manifest.json").read_text())
    assert data["engine_kind"] == "aoti" and data["device"] == "cpu" and data["isa"] == PORTABLE_ISA
    assert (data["preset"], data["height"], data["width"]) == ("tiny", 64, 64)
    assert data["torch_version"] == torch.__version__ and data["source"] == "random:tiny:seed0"
    assert aoti_tiny_bundle.parent.name == f"aoti-cpu-avx2-torch{torch.__version__.replace('+', '-')}"
    specs = io_table(TINY)
    assert list(data["engines"]) == list(specs)
    for name, spec in specs.items():
        entry = data["engines"][name]
        assert entry["file"] == f"{name}.pt2" and (aoti_tiny_bundle / entry["file"]).stat().st_size == entry["bytes"]
        assert entry["inputs"] == [t.as_dict() for t in spec.inputs]  # positional order
        assert entry["outputs"] == [t.as_dict() for t in spec.outputs]
        assert entry["parity"]["rel_error"] < GRAPH_TOLERANCE and entry["flags"]["inductor"]["cpp.march"] == "x86-64-v3"
    assert (aoti_tiny_bundle / "schedule.safetensors").stat().st_size == data["schedule_sizes"]["schedule.safetensors"]
    assert data["tokenizer"] and (aoti_tiny_bundle / data["tokenizer"]).stat().st_size > 0  # the C++ tokenizer's
    assert sorted(p.name for p in aoti_tiny_bundle.iterdir()) == sorted(
        ["manifest.json", "schedule.safetensors", data["tokenizer"], *(f"{n}.pt2" for n in specs)]
    )  # no temporary file left behind


def test_build_log_names_each_component(aoti_tiny_bundle):
    """Built 2 at a time: the log names every package once up front, and each once when it is done, counted."""
    log = (aoti_tiny_bundle.parents[2] / AOTI_BUILD_LOG).read_text()
    queued = re.search(r"building 6 packages, 2 at a time, longest first: (.*)", log).group(1)
    done = re.findall(r"\[([1-6])/6 done\] (\w+)\.pt2: [0-9.]+ MiB, relative error [0-9.e-]+, [0-9]+ s to build", log)
    assert sorted(int(count) for count, _ in done) == [1, 2, 3, 4, 5, 6]
    for name in io_table(TINY):
        assert f"{name}.pt2 (not built)" in queued and [n for _, n in done].count(name) == 1, name
    assert "building (" not in log and "Traceback" not in log


@pytest.mark.parametrize("name", list(io_table(TINY)))
def test_each_package_matches_pytorch_on_fresh_inputs(aoti_backend, tiny_model, name):
    spec = aoti_backend.specs[name]
    inputs = sample_inputs(spec, TINY, seed=11)  # not the build's check inputs (seed 0)
    with torch.no_grad():
        want = graph_modules(tiny_model, torch.float32)[name](*inputs)
    got = aoti_backend._run_all(name, *inputs)
    assert relative_error(got if len(got) > 1 else got[0], want) < GRAPH_TOLERANCE


def test_aoti_pipeline_matches_torch(aoti_backend, tiny_model):
    # As the ONNX Runtime backend: latents to float reassociation amplified by guidance and the steps
    # (sampling_tolerance), uint8 frames within one level.
    image = (np.random.default_rng(3).random((64, 64, 3)) * 255).astype(np.uint8)
    rescale = TINY.sampling.guidance_rescale
    for run, bound in (
        (lambda m: dcrt.animate(m, image, "a cat", steps=3, seed=4), sampling_tolerance(3, 7.5, None, rescale)),
        (
            lambda m: dcrt.interpolate(m, image, image[::-1].copy(), "a cat", steps=3, image_guidance_scale=2.0),
            sampling_tolerance(3, 7.5, 2.0, rescale),
        ),
    ):
        a, b = run(TorchBackend(tiny_model)), run(aoti_backend)
        assert relative_error(b.latents, a.latents) < bound
        assert np.abs(a.frames.astype(int) - b.frames.astype(int)).max() <= 1


def test_cli_build_again_is_up_to_date_and_animate_runs_on_it(aoti_tiny_bundle, tmp_path, run_cli):
    from PIL import Image

    root = str(aoti_tiny_bundle.parents[1])
    code, out, err = run_cli(["build", "--res", "tiny", "--engine", "aoti", "--out", root])
    assert code == 0 and out.strip() == str(aoti_tiny_bundle), err
    assert err.count("up to date") == 6 and "building" not in err
    Image.new("RGB", (80, 60), (200, 30, 30)).save(tmp_path / "in.png")
    args = ["animate", str(tmp_path / "in.png"), "x", "--res", "tiny", "--steps", "2", "--engines", root]
    code, _, err = run_cli([*args, "--backend", "aoti", "-o", str(tmp_path / "o.gif")])
    assert code == 0 and f"using aoti on cpu with {aoti_tiny_bundle}" in err, err
    code, _, err = run_cli([*args, "--device", "cpu", "-o", str(tmp_path / "p.gif")])  # auto finds it too
    assert code == 0 and "using aoti on cpu" in err, err


def _copy(aoti_tiny_bundle, tmp_path):
    """A copy of the bundle under a root of its own: (root, bundle directory)."""
    root = tmp_path / "engines"
    shutil.copytree(aoti_tiny_bundle, root / aoti_tiny_bundle.parent.name / aoti_tiny_bundle.name)
    return root, root / aoti_tiny_bundle.parent.name / aoti_tiny_bundle.name


def test_stale_packages_and_only_those_are_rebuilt(aoti_tiny_bundle, tmp_path, tiny_ckpt):
    root, directory = _copy(aoti_tiny_bundle, tmp_path)
    target, weights = detect_aoti_target("cpu"), Weights("tiny")

    def reasons(config=AotiConfig(), weights=weights, target=target):
        return plan_build(TINY, weights, root, target, config, TINY.height, TINY.width)[2]

    assert set(reasons().values()) == {None}
    assert set(reasons(AotiConfig(precision="fp16")).values()) == {"the build flags changed"}
    other = Weights("tiny", tiny_ckpt)
    assert set(reasons(weights=other).values()) == {f"built from random:tiny:seed0, not {tiny_ckpt}"}
    assert set(reasons(target=AotiTarget("cpu", PORTABLE_ISA, "0.0")).values()) == {"not built"}  # another torch
    with open(directory / "unet.pt2", "ab") as f:
        f.write(b"x")
    assert reasons()["unet"] == "unet.pt2 does not match its manifest"
    (directory / "unet.pt2").unlink()
    (directory / "text_encoder.pt2").unlink()
    shutil.copy(aoti_tiny_bundle / "unet.pt2", directory / "unet.pt2")
    messages = []
    report = build_aoti_bundle(TINY, weights, root, AotiConfig(), target, log=messages.append)
    assert report.built == {"text_encoder": "text_encoder.pt2 is missing"} and len(report.up_to_date) == 5
    open_aoti(directory, verify=True)  # the rebuilt package is recorded with its new hash


def test_an_up_to_date_build_refreshes_the_hosts_fields(aoti_tiny_bundle, tmp_path):
    """A bundle built before dcrt recorded a host field (here the video's fps) gains it without a rebuild."""
    root, directory = _copy(aoti_tiny_bundle, tmp_path)
    manifest = json.loads((directory / "manifest.json").read_text())
    fps = manifest["sampling"].pop("fps")
    (directory / "manifest.json").write_text(json.dumps(manifest))
    messages = []
    report = build_aoti_bundle(
        TINY, Weights("tiny"), root, AotiConfig(), detect_aoti_target("cpu"), log=messages.append
    )
    assert report.built == {} and "manifest.json: host fields updated" in messages
    assert json.loads((directory / "manifest.json").read_text())["sampling"]["fps"] == fps
    open_aoti(directory, verify=True)  # the packages are the ones the manifest records


def test_loading_refuses_a_broken_or_foreign_bundle(aoti_tiny_bundle, tmp_path):
    root, directory = _copy(aoti_tiny_bundle, tmp_path)
    with open(directory / "vae_decoder.pt2", "r+b") as f:
        f.write(b"\0")  # same size, other bytes: the sizes pass, torch cannot read it, a re-hash says why
    with pytest.raises(UsageError, match=r"vae_decoder.pt2 cannot be loaded \(.*\): check it with --verify"):
        open_aoti(directory)
    with pytest.raises(UsageError, match=r"vae_decoder.pt2 does not match the sha256 in its manifest"):
        open_aoti(directory, verify=True)
    manifest = AotiManifest.read(directory)
    manifest.torch_version = "0.0"
    manifest.write(directory)
    with pytest.raises(UsageError, match=r"built with torch 0.0, this is torch .*--engine aoti --device cpu`"):
        open_aoti(directory)
    (directory / "manifest.json").write_text('{"schema_version": 1, "engine_kind": "trt", "engines": {}}')
    with pytest.raises(UsageError, match="not an AOTInductor bundle"):
        open_aoti(directory)


@pytest.mark.heavy  # two more packages compiled; the dual-ref graphs' IO is proven on ONNX Runtime by default
def test_dual_ref_vae_packages_take_and_return_every_reference(tmp_path):
    # ToonCrafter's VAE graphs (docs/models.md §6.2): an encoder of 6 outputs, a decoder of 6 inputs, in IO-table order
    preset = dcrt.get_preset("tiny-tooncrafter")
    names = ("vae_encoder", "vae_decoder_second_pass")
    report = build_aoti_bundle(
        preset, Weights(preset.name), tmp_path, AotiConfig(), detect_aoti_target("cpu"), only=names
    )
    assert sorted(report.built) == sorted(names)
    model = dcrt.random_model(preset, seed=0)
    for name in names:
        spec = io_table(preset)[name]
        inputs = sample_inputs(spec, preset, seed=11)
        with torch.no_grad():
            want = graph_modules(model, torch.float32)[name](*inputs)
        got = call_package(load_package(report.directory / f"{name}.pt2", "cpu"), inputs)
        assert len(got) == len(spec.outputs)
        assert relative_error(got, want if isinstance(want, tuple) else (want,)) < GRAPH_TOLERANCE
