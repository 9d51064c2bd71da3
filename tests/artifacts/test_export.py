"""ONNX export of every component (tiny preset) and the ONNX Runtime backend against PyTorch."""

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import GRAPH_TOLERANCE, sampling_tolerance

import dcrt
from dcrt.artifacts.export import ExportRequest, export_model, relative_error, run_onnx
from dcrt.artifacts.graphs import io_table, sample_inputs
from dcrt.artifacts.manifest import ExportManifest
from dcrt.backends.onnxruntime_backend import open_onnxruntime
from dcrt.errors import UsageError
from dcrt.families.dynamicrafter.pipeline import Pipeline


def test_manifest_describes_every_graph(exported):
    out, manifest = exported
    data = json.loads((out / "manifest.json").read_text())
    assert data["schema_version"] == 2 and data["preset"] == "tiny" and data["opset"] == 17
    specs = io_table(dcrt.get_preset("tiny"))
    assert set(data["components"]) == set(specs)
    for name, spec in specs.items():
        entry = data["components"][name]
        assert entry["inputs"] == [t.as_dict() for t in spec.inputs]
        assert entry["parity"]["rel_error"] < GRAPH_TOLERANCE  # fp32 graphs vs the PyTorch modules
        assert all((out / f).is_file() for f in entry["files"])
    assert data["components"]["unet"]["inputs"][0]["shape"] == [2, 8, 16, 8, 8]
    assert data["components"]["unet_image_guidance"]["inputs"][2]["shape"] == [3, 333, 64]
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging left behind


@pytest.mark.parametrize("name", ["text_encoder", "image_encoder", "unet", "vae_encoder", "vae_decoder"])
def test_each_graph_matches_pytorch_on_fresh_inputs(exported, tiny_model, name):
    out, _ = exported
    spec = io_table(tiny_model.preset)[name]
    inputs = sample_inputs(spec, tiny_model.preset, seed=11)
    from dcrt.artifacts.export import graph_modules

    with torch.no_grad():
        want = graph_modules(tiny_model, torch.float32)[name](*inputs)
    assert relative_error(run_onnx(out / spec.filename, spec, inputs), want) < GRAPH_TOLERANCE


def test_rerun_is_a_no_op_unless_forced(exported, tiny_model):
    out, _ = exported
    stamp = (out / "unet.onnx").stat().st_mtime_ns
    messages = []
    export_model(tiny_model, out, ExportRequest(tiny_model.preset, "fp32", "random:tiny:seed0"), log=messages.append)
    assert (out / "unet.onnx").stat().st_mtime_ns == stamp and "up to date" in messages[0]


def test_fp16_graphs_within_stated_tolerance(tmp_path):
    model = dcrt.random_model("tiny", seed=0)
    manifest = export_model(model, tmp_path / "fp16", ExportRequest(model.preset, "fp16", "random:tiny:seed0"))
    for name, entry in manifest.components.items():
        assert entry.parity["tolerance"] == 3e-2 and entry.parity["rel_error"] < 3e-2, name
        assert entry.parity["rel_error"] > 1e-6, name  # really computed in half precision


def test_ort_pipeline_matches_torch(exported, tiny_model):
    # Same seed, same noise: the latents agree to float reassociation, which guidance and the steps amplify
    # (sampling_tolerance: 1.2e-2, 1.2e-2, 5.7e-4; measured with 1 and 2 threads: 2.5e-5, 1.6e-4, 5.0e-6),
    # and the uint8 frames to within one level (truncation can flip at a level boundary).
    out, _ = exported
    ort = Pipeline(open_onnxruntime(out))
    image = (np.random.default_rng(3).random((64, 64, 3)) * 255).astype(np.uint8)
    rescale = tiny_model.preset.sampling.guidance_rescale
    for run, bound in (
        (lambda m: dcrt.animate(m, image, "a cat", steps=3, seed=4), sampling_tolerance(3, 7.5, None, rescale)),
        (
            lambda m: dcrt.interpolate(m, image, image[::-1].copy(), "a cat", steps=3, image_guidance_scale=2.0),
            sampling_tolerance(3, 7.5, 2.0, rescale),
        ),
        (
            lambda m: dcrt.loop(m, image, "a cat", steps=2, guidance_scale=1.0),
            sampling_tolerance(2, 1.0, None, rescale),
        ),
    ):
        a, b = run(tiny_model), run(ort)
        assert relative_error(b.latents, a.latents) < bound
        assert np.abs(a.frames.astype(int) - b.frames.astype(int)).max() <= 1


def test_cli_animate_with_ort(exported, tmp_path, run_cli):
    from PIL import Image

    out, _ = exported
    Image.new("RGB", (80, 60), (200, 30, 30)).save(tmp_path / "in.png")
    code, _, err = run_cli(
        [
            "animate",
            str(tmp_path / "in.png"),
            "x",
            "--res",
            "tiny",
            "--steps",
            "2",
            "--backend",
            "ort",
            "--export-dir",
            str(out),
            "-o",
            str(tmp_path / "o.gif"),
        ]
    )
    assert code == 0, err
    code, _, err = run_cli(
        [
            "animate",
            str(tmp_path / "in.png"),
            "x",
            "--res",
            "tiny-256",
            "--backend",
            "ort",
            "--export-dir",
            str(out),
            "-o",
            str(tmp_path / "p.gif"),
        ]
    )
    assert code == 2 and "holds preset tiny, not tiny-256" in err


def _copy(exported, tmp_path):
    out, _ = exported
    shutil.copytree(out, tmp_path / "copy")
    return tmp_path / "copy"


def test_missing_graph_is_named(exported, tmp_path):
    copy = _copy(exported, tmp_path)
    (copy / "vae_decoder.onnx").unlink()
    with pytest.raises(UsageError, match=r"vae_decoder.onnx is missing"):
        open_onnxruntime(copy)


def test_modified_graph_is_named(exported, tmp_path):
    copy = _copy(exported, tmp_path)
    with open(copy / "unet.onnx", "r+b") as f:
        f.seek(1000)
        f.write(b"\x00\x01\x02")
    with pytest.raises(UsageError, match=r"unet.onnx does not match the sha256"):
        open_onnxruntime(copy, verify=True)


def test_opening_an_export_checks_sizes_and_hashes_only_when_asked(exported, tmp_path, hashed):
    copy = _copy(exported, tmp_path)
    open_onnxruntime(copy)
    assert hashed == {}  # every file was hashed when it was written
    graph = (copy / "unet.onnx").read_bytes()
    (copy / "unet.onnx").write_bytes(graph + b"\0")
    size = rf"{len(graph) + 1} bytes, {len(graph)} recorded\)"
    with pytest.raises(
        UsageError, match=r"unet.onnx does not match the sha256 in its manifest \(corrupt or modified: " + size
    ):
        open_onnxruntime(copy)
    assert hashed == {}
    (copy / "unet.onnx").write_bytes(graph)
    schedule = bytearray((copy / "schedule.safetensors").read_bytes())
    schedule[-1] ^= 1  # a value of the last tensor: same size, still loads
    (copy / "schedule.safetensors").write_bytes(schedule)
    with pytest.raises(
        UsageError,
        match=r"schedule.safetensors does not match the sha256 .*`dcrt export --res tiny .* --out .* --force`",
    ):
        open_onnxruntime(copy, verify=True)
    assert hashed["schedule.safetensors"] == 1


def test_an_export_of_an_older_schema_says_to_re_export(exported, tmp_path):
    copy = _copy(exported, tmp_path)
    data = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps(data | {"schema_version": 1}))
    with pytest.raises(UsageError, match=r"schema version 1, this dcrt reads 2: re-export it with `dcrt export"):
        open_onnxruntime(copy)


def test_manifest_of_another_preset(exported, tmp_path):
    copy = _copy(exported, tmp_path)
    data = json.loads((copy / "manifest.json").read_text())
    data["preset"] = "tiny-256"
    data["components"]["unet"]["inputs"][0]["shape"] = [2, 8, 16, 4, 4]
    (copy / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(UsageError, match=r"unet.onnx has other inputs than preset tiny-256"):
        open_onnxruntime(copy)


def test_not_an_export(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        open_onnxruntime(tmp_path / "none")
    with pytest.raises(UsageError, match="no manifest.json"):
        open_onnxruntime(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(UsageError, match="not a valid dcrt manifest"):
        ExportManifest.read(tmp_path)


def test_per_tensor_external_data_is_gathered_into_one_file(tmp_path):
    # Above 2 GB the TorchScript exporter writes one file per tensor; export_graph streams them into one
    # `.data` file without loading the weights. Exercised here on a small graph saved the same way.
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from dcrt.artifacts.export import _gather_external_data

    weights = [np.random.default_rng(i).standard_normal((64, 64)).astype(np.float32) for i in range(3)]
    nodes, names = [], ["x"]
    for i, w in enumerate(weights):
        nodes.append(helper.make_node("MatMul", [names[-1], f"w{i}"], [f"h{i}"]))
        names.append(f"h{i}")
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 64])],
        [helper.make_tensor_value_info(names[-1], TensorProto.FLOAT, [2, 64])],
        [numpy_helper.from_array(w, f"w{i}") for i, w in enumerate(weights)],
    )
    raw = tmp_path / "raw"
    raw.mkdir()
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save_model(
        model, str(raw / "g.onnx"), save_as_external_data=True, all_tensors_to_one_file=False, size_threshold=0
    )
    assert len(list(raw.iterdir())) == 4  # the graph + one file per tensor
    loaded = onnx.load(str(raw / "g.onnx"), load_external_data=False)
    out = tmp_path / "out"
    out.mkdir()
    _gather_external_data(loaded, raw, out / "g.onnx.data")
    onnx.save_model(loaded, str(out / "g.onnx"))
    onnx.checker.check_model(str(out / "g.onnx"))
    assert sorted(p.name for p in out.iterdir()) == ["g.onnx", "g.onnx.data"]
    import onnxruntime as ort

    x = np.ones((2, 64), np.float32)
    got = ort.InferenceSession(str(out / "g.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, x @ weights[0] @ weights[1] @ weights[2], rtol=1e-4)


def test_parity_session_frees_each_tensor_at_its_last_use(tmp_path):
    # Tensor sizes go up through six sizes and back down through the same sizes, as a UNet's levels
    # do. ONNX Runtime's default planner keeps a buffer for each size to reuse on the way back (about
    # six tensors resident); the parity check must hold only what a step reads and writes.
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from dcrt.artifacts.export import parity_session
    from dcrt.bench import process_memory_kib

    floats, grow, levels = 10 << 20, 1 << 14, 6  # 40 MiB: above glibc's mmap ceiling, so fresh pages
    nodes, name = [], "x"
    initializers = [
        helper.make_tensor(n, TensorProto.INT64, d, v)
        for n, d, v in [("pad", [2], [0, grow]), ("start", [1], [0]), ("axis", [1], [0])]
    ]
    for i in range(levels):
        nodes.append(helper.make_node("Pad", [name, "pad"], [f"up{i}"]))
        name = f"up{i}"
    for i in reversed(range(levels)):
        initializers.append(helper.make_tensor(f"end{i}", TensorProto.INT64, [1], [floats + i * grow]))
        nodes.append(helper.make_node("Slice", [name, "start", f"end{i}", "axis"], [f"down{i}"]))
        name = f"down{i}"
    graph = helper.make_graph(
        nodes,
        "u",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [floats])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [floats])],
        initializers,
    )
    path = str(tmp_path / "u.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    x = np.ones(floats, np.float32)

    def resident_tensors(session) -> float:  # the arena keeps what a run took: RssAnon's rise is its peak
        before = process_memory_kib()["RssAnon"]
        (out,) = session.run(None, {"x": x})
        assert np.array_equal(out, x)
        return (process_memory_kib()["RssAnon"] - before) * 1024 / x.nbytes

    assert resident_tensors(ort.InferenceSession(path, providers=["CPUExecutionProvider"])) > levels - 1
    assert resident_tensors(parity_session(path)) < 3


@pytest.fixture(scope="module")
def exported_tooncrafter(tmp_path_factory):
    model = dcrt.random_model("tiny-tooncrafter", seed=0)
    out = tmp_path_factory.mktemp("export") / "tiny-tooncrafter"
    return model, out, export_model(model, out, ExportRequest(model.preset, "fp32", "random:tiny-tooncrafter:seed0"))


def test_dual_ref_vae_graphs_match_pytorch(exported_tooncrafter):
    # docs/models.md §6.2, 6.3: the encoder's five reference outputs and both clip lengths of the decoder
    model, out, manifest = exported_tooncrafter
    specs = io_table(model.preset)
    assert [t.name for t in specs["vae_encoder"].outputs] == ["latents"] + [f"reference_{i}" for i in range(5)]
    assert specs["vae_decoder"].inputs[0].shape[0] == 16 and specs["vae_decoder_second_pass"].inputs[0].shape[0] == 14
    for name in ("vae_encoder", "vae_decoder", "vae_decoder_second_pass"):
        assert manifest.components[name].parity["rel_error"] < GRAPH_TOLERANCE, name


def test_ort_pipeline_matches_torch_with_the_dual_ref_decoder(exported_tooncrafter):
    model, out, _ = exported_tooncrafter
    ort = Pipeline(open_onnxruntime(out))
    image = (np.random.default_rng(3).random((64, 64, 3)) * 255).astype(np.uint8)
    rescale = model.preset.sampling.guidance_rescale
    for run, bound in (  # measured with 1 and 2 threads: 9.9e-6, 7.9e-6 (bounds 1.2e-2, 8.0e-3)
        (
            lambda m: dcrt.interpolate(m, image, image[::-1].copy(), "a cat", steps=3),
            sampling_tolerance(3, 7.5, None, rescale),
        ),
        (lambda m: dcrt.loop(m, image, "a cat", steps=2), sampling_tolerance(2, 7.5, None, rescale)),
    ):
        a, b = run(model), run(ort)
        assert relative_error(b.latents, a.latents) < bound
        assert np.abs(a.frames.astype(int) - b.frames.astype(int)).max() <= 1
