"""The TensorRT runtime's logic with a fake `tensorrt` and allocator: one shared scratch block, IO bound once,
enqueue on the caller's stream, and every refusal (other GPU / TensorRT / preset, partial or modified bundle)."""

import sys
from dataclasses import replace

import pytest
from _trt_fakes import DEVICE_MEMORY, TARGET, FakeAllocator, FakeBuilder, FakeTrt, make_export

from dcrt.artifacts.engine_bundle import EngineManifest, Target
from dcrt.artifacts.tensorrt_build import BuildConfig, build_bundle
from dcrt.backends.tensorrt_backend import TensorRTGraphs
from dcrt.backends.tensorrt_runtime import EngineSet, nbytes
from dcrt.errors import BackendUnavailable, UsageError


@pytest.fixture
def bundle(tmp_path):
    make_export(tmp_path / "export")
    report = build_bundle(tmp_path / "export", tmp_path / "engines", BuildConfig(), TARGET, builder=FakeBuilder())
    return report.directory


def _load(bundle, trt=None, target=TARGET, **kw):
    trt, memory = trt or FakeTrt(), FakeAllocator()
    return EngineSet(bundle, trt=trt, target=target, allocate=memory, **kw), trt, memory


def test_one_shared_scratch_block_and_io_bound_once(bundle):
    engines, trt, memory = _load(bundle)
    scratch = engines.scratch
    assert scratch.size == max(DEVICE_MEMORY.values())  # the hungriest engine's, measured from the engines
    assert [b for b in memory.blocks if b.size == scratch.size] == [scratch]  # allocated once
    memory_calls = [c for c in trt.log if c[0] == "set_device_memory"]
    assert memory_calls == [("set_device_memory", scratch.ptr, scratch.size)] * 6  # every context shares it
    bound = [c for c in trt.log if c[0] == "set_tensor_address"]
    io = {(name, t.name): t for name, spec in engines.specs.items() for t in (*spec.inputs, *spec.outputs)}
    assert len(bound) == len(io)  # each IO tensor bound exactly once
    pointers = {b.ptr: b.size for b in memory.blocks}
    assert len({c[2] for c in bound}) == len(io)  # distinct static buffers ...
    for (name, tensor), spec in io.items():  # ... of the IO table's sizes
        assert pointers[trt.engines[name].contexts[0].addresses[tensor]] == nbytes(spec)
    trt.log.clear()
    engines["unet"].enqueue(stream=1234)
    engines["unet"].enqueue(stream=1234)
    assert trt.log == [("execute_async_v3", 1234)] * 2  # a run binds and allocates nothing


def test_plan_with_other_io_than_the_table_is_refused(bundle):
    with pytest.raises(UsageError, match=r"unet.plan: tensor x .*rebuild it"):
        _load(bundle, trt=FakeTrt(break_component="unet"))


@pytest.mark.parametrize(
    "target, words",
    [
        (
            Target("NVIDIA A10G", (8, 6), "10.13.0"),
            r"GPU NVIDIA H100 80GB HBM3 \(sm90\), this one is NVIDIA A10G \(sm86\)",
        ),
        (replace(TARGET, tensorrt_version="11.4.0"), r"TensorRT 10.13.0, this is TensorRT 11.4.0"),
    ],
)
def test_other_gpu_or_tensorrt_is_refused_with_the_rebuild_command(bundle, target, words):
    with pytest.raises(UsageError, match=words + r".*rebuild them with `dcrt build --res tiny`"):
        _load(bundle, target=target)


def test_partial_or_modified_bundle_is_refused(bundle):
    manifest = EngineManifest.read(bundle)
    del manifest.engines["vae_decoder"]
    manifest.write(bundle)
    with pytest.raises(UsageError, match=r"no engine for vae_decoder .*`dcrt build --res tiny`"):
        _load(bundle)


def test_modified_plan_is_refused(bundle):
    (bundle / "unet.plan").write_bytes(b"{}")
    with pytest.raises(UsageError, match=r"unet.plan does not match the sha256"):
        _load(bundle)
    with pytest.raises(UsageError, match="does not exist"):
        _load(bundle.parent / "missing")


def test_loading_checks_sizes_and_hashes_only_when_asked(bundle, hashed):
    _load(bundle)
    assert hashed == {}
    plan = bundle / "unet.plan"
    plan.write_bytes(plan.read_bytes().replace(b"graph", b"GRAPH"))  # same size, other bytes
    _load(bundle)
    assert hashed == {}
    with pytest.raises(
        UsageError, match=r"unet.plan does not match the sha256 in its manifest \(corrupt or modified\)"
    ):
        _load(bundle, verify=True)
    assert hashed["unet.plan"] == 1


def test_without_tensorrt_the_backend_says_what_is_missing(bundle, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(BackendUnavailable, match=r"^TensorRT is not available \(\w*Error"):
        EngineSet(bundle)


def test_backend_needs_cuda(bundle):
    with pytest.raises(UsageError, match="CUDA only"):
        TensorRTGraphs(bundle, device="cpu")
