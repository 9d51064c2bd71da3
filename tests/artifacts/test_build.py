"""The TensorRT build's planning layer, without TensorRT: profiles, flags, cache keys, staleness, manifests,
the missing-TensorRT path, and that every TensorRT name the code uses exists in the real 11.4 API."""

import ast
import gzip
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from _trt_fakes import TARGET, FakeBuilder, change_graph, make_export

import dcrt
from dcrt.artifacts.engine_bundle import (
    EngineManifest,
    Target,
    bundle_dir,
    check_target,
    detect_target,
    engine_key,
    find_bundle,
    import_tensorrt,
    preset_dirname,
    stale_reason,
)
from dcrt.artifacts.graphs import io_table
from dcrt.artifacts.host_files import HOST_FIELD_NAMES, host_fields, write_host_files
from dcrt.artifacts.manifest import ExportManifest
from dcrt.artifacts.tensorrt_build import BuildConfig, build_bundle, lift_softmax_to_fp32, profile_for
from dcrt.errors import BackendUnavailable, UsageError
from dcrt.models.tokenizer import vocabulary_file

REPO = Path(__file__).resolve().parents[2]
TRT_MODULES = (
    "dcrt/artifacts/engine_bundle.py",
    "dcrt/artifacts/tensorrt_build.py",
    "dcrt/backends/tensorrt_runtime.py",
)


# ------------------------------------------------------------------------------------ config from the IO table


@pytest.mark.parametrize("preset", ["tiny", "512", "1024"])
def test_profile_is_the_static_io_table_shape(preset):
    for spec in io_table(dcrt.get_preset(preset)).values():
        profile = profile_for(spec)
        assert list(profile) == [t.name for t in spec.inputs]
        for t in spec.inputs:
            assert profile[t.name] == (t.shape, t.shape, t.shape)
    vae = profile_for(io_table(dcrt.get_preset("1024"))["vae_decoder"])
    assert vae["latents"][0] == (4, 4, 72, 128)


def test_flags_record_precision_and_fp32_softmax_only_for_fp16_vae():
    config = BuildConfig(opt_level=4, workspace_gb=2)
    vae, unet = config.flags("vae_decoder", "fp16"), config.flags("unet", "fp16")
    assert vae["fp32_softmax"] and not unet["fp32_softmax"]
    assert not config.flags("vae_decoder", "fp32")["fp32_softmax"]  # an fp32 graph's softmax is fp32 already
    assert vae["opt_level"] == 4 and vae["workspace_bytes"] == 2 << 30
    assert "timing_cache" not in vae  # a cache speeds up builds, it does not change what is built


@pytest.mark.parametrize("kwargs", [{"opt_level": 6}, {"opt_level": -1}, {"workspace_gb": 0}])
def test_bad_build_options_are_usage_errors(kwargs):
    with pytest.raises(UsageError):
        BuildConfig(**kwargs)


def test_bundle_paths():
    assert TARGET.dirname == "nvidia-h100-80gb-hbm3-sm90-trt10.13.0"
    assert bundle_dir(Path("engines"), TARGET, "512") == Path("engines/nvidia-h100-80gb-hbm3-sm90-trt10.13.0/512")
    assert preset_dirname("512", 320, 512, (320, 512)) == "512"
    assert preset_dirname("512", 640, 1024, (320, 512)) == "512-640x1024"


# ------------------------------------------------------------------------------- build, cache keys, staleness


@pytest.fixture
def export_dir(tmp_path):
    make_export(tmp_path / "export" / "tiny")
    return tmp_path / "export" / "tiny"


def _build(export_dir, root, config=BuildConfig(), builder=None, target=TARGET, **kw):
    return build_bundle(export_dir, root, config, target, builder=builder or FakeBuilder(), **kw)


def test_build_writes_bundle_and_manifest_round_trips(export_dir, tmp_path):
    builder, events = FakeBuilder(), []
    report = _build(export_dir, tmp_path / "engines", builder=builder, progress=lambda *event: events.append(event))
    directory = tmp_path / "engines" / TARGET.dirname / "tiny"
    assert report.directory == directory and set(report.built) == set(io_table(dcrt.get_preset("tiny")))
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        [f"{n}.plan" for n in report.built] + ["manifest.json", "schedule.safetensors", "clip_bpe_vocab.txt"]
    )
    assert not [p for p in (tmp_path / "engines").rglob(".*")]  # no temporary files left behind
    manifest = EngineManifest.read(directory)
    assert manifest == EngineManifest.read(manifest.write(directory).parent)
    data = json.loads((directory / "manifest.json").read_text())
    assert data["gpu_name"] == TARGET.gpu_name and data["compute_capability"] == [9, 0]
    assert data["tensorrt_version"] == "10.13.0" and data["export"]["preset"] == "tiny"
    assert data["engines"]["unet"]["inputs"][0]["shape"] == [2, 8, 16, 8, 8]
    assert data["engines"]["unet"]["onnx"] == ExportManifest.read(export_dir).components["unet"].files
    assert manifest.device_memory_bytes == 12 << 20  # the largest engine's (unet_image_guidance): the shared block
    assert {(name, soft) for name, soft, _ in builder.calls} >= {("vae_decoder", True), ("unet", False)}
    assert builder.calls[0][2] == tmp_path / "engines" / TARGET.dirname / "timing.cache"  # one cache per GPU
    assert ("unet", "Building engine", 2, 2) in events


def test_rebuild_only_what_is_stale(export_dir, tmp_path):
    root = tmp_path / "engines"
    _build(export_dir, root)
    again = _build(export_dir, root)
    assert again.built == {} and len(again.up_to_date) == 6

    change_graph(export_dir, "unet", "v2")
    report = _build(export_dir, root)
    assert report.built == {"unet": "the ONNX export changed"}

    plan = report.directory / "vae_decoder.plan"
    plan.write_bytes(plan.read_bytes() + b"x")
    assert _build(export_dir, root).built == {"vae_decoder": "vae_decoder.plan does not match its manifest"}

    (report.directory / "text_encoder.plan").unlink()
    assert _build(export_dir, root).built == {"text_encoder": "text_encoder.plan is missing"}

    rebuilt = _build(export_dir, root, config=BuildConfig(opt_level=5))
    assert set(rebuilt.built) == set(report.up_to_date) | {"unet"} and set(rebuilt.built.values()) == {
        "the build flags changed"
    }


def test_other_target_gets_its_own_bundle(export_dir, tmp_path):
    root = tmp_path / "engines"
    _build(export_dir, root)
    other = Target("NVIDIA L40S", (8, 9), "10.13.0")
    report = _build(export_dir, root, target=other)
    assert len(report.built) == 6 and report.directory.parent.name == "nvidia-l40s-sm89-trt10.13.0"
    assert len(_build(export_dir, root).up_to_date) == 6  # the first bundle is untouched


def test_stale_reason_and_keys(export_dir, tmp_path):
    report = _build(export_dir, tmp_path / "engines")
    manifest = EngineManifest.read(report.directory)
    export = ExportManifest.read(export_dir)
    key = engine_key(TARGET, export, "unet", BuildConfig())
    assert stale_reason(key, manifest, report.directory) is None
    assert stale_reason(key, None, report.directory) == "not built"
    other = replace(key, target=Target(TARGET.gpu_name, (9, 0), "11.4.0"))
    reason = stale_reason(other, manifest, report.directory)
    assert reason.startswith("built for NVIDIA H100 80GB HBM3 (sm90), TensorRT 10.13.0")
    assert key != engine_key(TARGET, export, "unet", BuildConfig(workspace_gb=1))
    assert key == engine_key(TARGET, export, "unet", BuildConfig(timing_cache=Path("elsewhere")))


def test_interrupted_build_keeps_finished_plans(export_dir, tmp_path):
    class Crash(Exception):
        pass

    def flaky(onnx_path, spec, *args):
        if spec.name == "unet":
            raise Crash()
        return FakeBuilder()(onnx_path, spec, *args)

    with pytest.raises(Crash):
        _build(export_dir, tmp_path / "engines", builder=flaky)
    report = _build(export_dir, tmp_path / "engines")
    assert set(report.built) == {"unet", "unet_image_guidance", "vae_encoder", "vae_decoder"}
    assert report.up_to_date == ["text_encoder", "image_encoder"]


def test_an_up_to_date_build_hashes_nothing_and_verify_hashes_everything(export_dir, tmp_path, hashed):
    root = tmp_path / "engines"
    report = _build(export_dir, root)
    assert hashed == {}  # plans are hashed in memory as they are written; the export is checked by size
    plan = report.directory / "unet.plan"
    plan.write_bytes(plan.read_bytes().replace(b"graph", b"GRAPH"))  # same size, other bytes
    assert _build(export_dir, root).built == {} and hashed == {}
    assert _build(export_dir, root, verify=True).built == {"unet": "unet.plan does not match its manifest"}
    assert hashed["unet.onnx"] == 1 and hashed["unet.plan"] == 1 and hashed["schedule.safetensors"] == 2


def test_build_refuses_a_modified_export(export_dir, tmp_path):
    (export_dir / "unet.onnx").write_bytes(b"tampered")
    with pytest.raises(UsageError, match="unet.onnx does not match"):
        _build(export_dir, tmp_path / "engines")


def test_bundle_carries_the_host_fields_and_vocabulary_as_an_aoti_bundle_does(export_dir, tmp_path):
    """The C++ host's vocabulary beside the plans and named in the manifest, with the preset's defaults: the same
    fields and file as an AOTInductor bundle of the preset; a bundle whose plans are all up to date gains them."""
    report = _build(export_dir, tmp_path / "engines")
    fields = host_fields(dcrt.get_preset("tiny"))
    manifest = EngineManifest.read(report.directory)
    assert {name: getattr(manifest, name) for name in fields} == fields
    assert manifest.tokenizer == "clip_bpe_vocab.txt" and manifest.sampling["steps"] == 50
    vocabulary = report.directory / manifest.tokenizer
    assert vocabulary.read_bytes() == gzip.decompress(vocabulary_file().read_bytes())
    aoti = tmp_path / "aoti"  # what the AOTInductor build writes, by the same function
    aoti.mkdir()
    write_host_files(aoti, fields)
    assert (aoti / fields["tokenizer"]).read_bytes() == vocabulary.read_bytes()

    # As a bundle built before: no vocabulary, no host fields. A rebuild builds no plan and adds both.
    vocabulary.unlink()
    data = json.loads((report.directory / "manifest.json").read_text())
    old = {k: v for k, v in data.items() if k not in HOST_FIELD_NAMES}
    (report.directory / "manifest.json").write_text(json.dumps(old))
    assert EngineManifest.read(report.directory).tokenizer is None  # an old manifest still reads
    again = _build(export_dir, tmp_path / "engines")
    assert again.built == {} and vocabulary.is_file()
    assert json.loads((report.directory / "manifest.json").read_text()) == data


def test_a_bundle_of_a_family_the_host_does_not_run_has_no_vocabulary(tmp_path):
    make_export(tmp_path / "export", preset="tiny-svd")
    report = _build(tmp_path / "export", tmp_path / "engines")
    manifest = EngineManifest.read(report.directory)
    assert [getattr(manifest, name) for name in HOST_FIELD_NAMES] == [None] * 4
    assert not (report.directory / "clip_bpe_vocab.txt").exists()


# --------------------------------------------------------------------------------------- mismatch messages


def test_loading_for_another_gpu_trt_or_preset_says_which_and_how(export_dir, tmp_path):
    manifest = EngineManifest.read(_build(export_dir, tmp_path / "engines").directory)
    check_target(manifest, TARGET, "tiny", Path("b"))
    with pytest.raises(
        UsageError,
        match=r"GPU NVIDIA H100 80GB HBM3 \(sm90\), this one is NVIDIA L4 \(sm89\).*"
        r"`dcrt build --res tiny`",
    ):
        check_target(manifest, Target("NVIDIA L4", (8, 9), "10.13.0"), "tiny", Path("b"))
    with pytest.raises(UsageError, match=r"TensorRT 10.13.0, this is TensorRT 11.4.0"):
        check_target(manifest, replace(TARGET, tensorrt_version="11.4.0"), "tiny", Path("b"))
    with pytest.raises(UsageError, match=r"preset tiny, not 512: rebuild them with `dcrt build --res 512`"):
        check_target(manifest, TARGET, "512", Path("b"))


def test_find_bundle_names_the_bundles_that_exist(export_dir, tmp_path):
    root = tmp_path / "engines"
    _build(export_dir, root)
    assert find_bundle(root, TARGET, "tiny") == root / TARGET.dirname / "tiny"
    with pytest.raises(
        UsageError,
        match=r"has them only for nvidia-h100-80gb-hbm3-sm90-trt10.13.0: build them with "
        r"`dcrt build --res tiny`",
    ):
        find_bundle(root, Target("NVIDIA A100-SXM4-80GB", (8, 0), "10.13.0"), "tiny")


def test_manifest_schema_mismatch(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"schema_version": 99}))
    with pytest.raises(UsageError, match="rebuild with `dcrt build`"):
        EngineManifest.read(tmp_path)
    with pytest.raises(UsageError, match="not a dcrt engine bundle"):
        EngineManifest.read(tmp_path / "nowhere")


# --------------------------------------------------------------------------------------- without TensorRT


def test_missing_tensorrt_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` raise ImportError
    for call in (import_tensorrt, detect_target):
        with pytest.raises(BackendUnavailable) as info:
            call()
        message = str(info.value)
        assert "\n" not in message and "TensorRT is not available" in message and "dcrt[trt]" in message


def test_build_with_tensorrt_but_no_gpu_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", type(sys)("tensorrt"))
    from cuda.bindings import runtime

    monkeypatch.setattr(runtime, "cudaGetDeviceCount", lambda: (runtime.cudaError_t.cudaErrorInsufficientDriver, None))
    with pytest.raises(BackendUnavailable, match=r"^no CUDA GPU is visible \(cudaErrorInsufficientDriver\)"):
        detect_target()


# ---------------------------------------------------------------------------------- fp32 softmax rewrite


def test_lift_softmax_to_fp32_keeps_the_function():
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("MatMul", ["q", "k"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "v"], ["out"]),
    ]
    f16 = TensorProto.FLOAT16
    graph = helper.make_graph(
        nodes,
        "attn",
        [helper.make_tensor_value_info(n, f16, [4, 4]) for n in "qkv"],
        [helper.make_tensor_value_info("out", f16, [4, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    lifted = lift_softmax_to_fp32(onnx.ModelProto.FromString(model.SerializeToString()))
    onnx.checker.check_model(lifted, full_check=True)
    softmax = next(n for n in lifted.graph.node if n.op_type == "Softmax")
    casts = [n for n in lifted.graph.node if n.op_type == "Cast"]
    assert len(casts) == 2 and {a.i for c in casts for a in c.attribute} == {TensorProto.FLOAT, f16}
    assert softmax.input[0] == casts[0].output[0] and softmax.output[0] == casts[1].input[0]
    feeds = {n: np.random.default_rng(i).standard_normal((4, 4)).astype(np.float16) for i, n in enumerate("qkv")}

    def run(m):
        return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]

    np.testing.assert_allclose(run(lifted).astype(np.float32), run(model).astype(np.float32), atol=2e-3)


# ------------------------------------------------------------------------------ the real TensorRT API names


_TRT_RECEIVERS = {
    "trt",
    "builder",
    "network",
    "parser",
    "cfg",
    "profile",
    "cache",
    "engine",
    "context",
    "_runtime",
    "logger",
}


def _trt_names(path: Path, receivers: set[str] = _TRT_RECEIVERS) -> set[str]:
    """Attribute names reached from `trt` or from a variable holding a TensorRT object (names in _TRT_RECEIVERS,
    also as `self.<name>`), plus the IProgressMonitor methods a subclass overrides."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain, value = [node.attr], node.value
            while isinstance(value, (ast.Attribute, ast.Call)):
                if isinstance(value, ast.Call):
                    value = value.func
                else:
                    chain.append(value.attr)
                    value = value.value
            if not isinstance(value, ast.Name):
                continue
            chain.reverse()
            if value.id == "self" and chain[0] in receivers:
                chain = chain[1:]
            elif value.id not in receivers:
                continue
            names.update(chain)
        elif (
            isinstance(node, ast.ClassDef)
            and "trt" in receivers
            and any("IProgressMonitor" in ast.unparse(b) for b in node.bases)
        ):
            names.update(f.name for f in node.body if isinstance(f, ast.FunctionDef) and f.name != "__init__")
    return names - {"__init__", "__version__"}


def test_every_tensorrt_name_used_exists_in_tensorrt_11_4():
    listed = [
        line.strip()
        for line in (REPO / "tests/data/tensorrt_api_names.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    exact = set(listed)
    used = set().union(*(_trt_names(REPO / path) for path in TRT_MODULES))
    # The scan must see the calls that matter, or it checks nothing.
    assert {
        "execute_async_v3",
        "set_tensor_address",
        "set_device_memory",
        "device_memory_size_v2",
        "build_serialized_network",
        "STRONGLY_TYPED",
        "phase_start",
        "step_complete",
        "set_timing_cache",
        "USER_MANAGED",
        "parse_from_file",
    } <= used
    # The linker stores a name inside a longer string ending with it (float16 in bfloat16): accept suffixes.
    missing = sorted(n for n in used if n not in exact and not any(s.endswith(n) for s in listed))
    assert not missing, f"not in the TensorRT 11.4 Python API: {missing}"
    # Weak typing is gone in TensorRT 11; the builder must not rely on it.
    assert not {"FP16", "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS"} & exact
    assert not {"FP16", "OBEY_PRECISION_CONSTRAINTS"} & used


def test_every_cuda_runtime_name_used_exists():
    from cuda.bindings import runtime

    used = set()
    for path in TRT_MODULES:
        used |= _trt_names(REPO / path, {"runtime"})
    assert {"cudaMalloc", "cudaMemcpyAsync", "cudaGetDeviceProperties"} <= used
    enums = [runtime.cudaError_t, runtime.cudaMemcpyKind]
    missing = sorted(n for n in used if not hasattr(runtime, n) and not any(hasattr(e, n) for e in enums))
    assert not missing, f"not in cuda.bindings.runtime: {missing}"


def test_tooncrafter_plan_builds_both_clip_decoders_with_fp32_softmax(tmp_path):
    # docs/models.md §6.3: a decoder engine per clip length, each with the fp16 graph's softmaxes lifted to fp32
    make_export(tmp_path / "export" / "tiny-tooncrafter", preset="tiny-tooncrafter")
    builder = FakeBuilder()
    report = _build(tmp_path / "export" / "tiny-tooncrafter", tmp_path / "engines", builder=builder)
    assert set(report.built) == set(io_table(dcrt.get_preset("tiny-tooncrafter")))
    softmax = {name: soft for name, soft, _ in builder.calls}
    assert softmax["vae_decoder"] and softmax["vae_decoder_second_pass"] and softmax["vae_encoder"]
    assert not softmax["unet"]
    assert profile_for(io_table(dcrt.get_preset("tooncrafter"))["vae_decoder_second_pass"])["latents"][0] == (
        14,
        4,
        40,
        64,
    )
