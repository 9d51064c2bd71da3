import copy
import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import GRAPH_TOLERANCE, shared_dir
from safetensors.torch import save_file

import dcrt
from dcrt.artifacts.export import relative_error
from dcrt.errors import CheckpointError, UsageError
from dcrt.families.dynamicrafter.checkpoint import expected_shapes, original_state_dict, unused_tensor_shapes
from dcrt.families.state_dicts import read_state_dict


def _same_weights(a: dcrt.DynamiCrafter, b: dcrt.DynamiCrafter) -> None:
    sa, sb = original_state_dict(a), original_state_dict(b)
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k].to(sb[k].dtype), sb[k]), k


@pytest.mark.parametrize("preset", ["256", "512", "1024"])
def test_full_preset_layout_equals_the_released_checkpoint(preset):
    shared = shared_dir()
    if shared is None:
        pytest.skip(
            "needs the released checkpoints' key lists (checkpoint_keys/, kept outside the repository): "
            "set DCRT_SHARED_DIR to the folder that holds them"
        )
    released = json.loads((shared / "checkpoint_keys" / f"{preset}.json").read_text())
    want = {k["key"]: tuple(k["shape"]) for k in released["keys"]}
    got = expected_shapes(preset)
    assert got == want
    unused = {k["key"] for k in released["keys"] if not k["used_at_inference"]}
    # every tensor the original never reads is declared (schedule buffers are kept: they are 4 KB each)
    assert set(unused_tensor_shapes(dcrt.get_preset(preset))) == {k for k in unused if "." in k}


def test_random_model_has_no_zero_tensor(tiny_256_model):
    for key, tensor in original_state_dict(tiny_256_model).items():
        if key.startswith(
            ("sqrt_recip", "posterior_variance", "posterior_log", "posterior_mean", "alphas_cumprod_prev", "log_one")
        ):
            continue  # schedule tensors hold their true values, a few of which are exactly 0 or 1
        assert torch.count_nonzero(tensor) == tensor.numel(), key


def test_random_model_is_seeded():
    a, b, c = (dcrt.random_model("tiny", seed=s) for s in (1, 1, 2))
    _same_weights(a, b)
    assert not torch.equal(a.unet.out[2].weight, c.unet.out[2].weight)


@pytest.mark.parametrize("suffix", [".ckpt", ".safetensors"])
def test_save_load_round_trip_is_exact(tiny_model, tmp_path, suffix):
    path = dcrt.save_checkpoint(tiny_model, tmp_path / f"model{suffix}")
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left behind
    loaded = dcrt.load_model(path, preset="tiny")
    _same_weights(tiny_model, loaded)  # what a round trip keeps exactly: every tensor, bit for bit
    x = torch.randn(1, 8, 16, 8, 8)
    args = (torch.tensor([500]), torch.randn(1, 333, 64), torch.tensor([24]))
    with torch.no_grad():
        want = tiny_model.unet(x, *args)
        # Bit-identical weights in storage aligned as the original's give bit-identical outputs: the same kernels
        # sum in the same order. A memory-mapped safetensors file places its tensors at the header's offsets (not
        # 64-byte aligned), which sends oneDNN/MKL down other SIMD paths: the same sums in another order.
        aligned = copy.deepcopy(loaded)  # fresh, aligned allocations of the loaded tensors
        assert torch.equal(aligned.unet(x, *args), want)
        # As loaded (memory-mapped where the format allows), the outputs differ by reassociation alone: at most
        # one fp32 rounding per op along the tiny UNet's chain (GRAPH_TOLERANCE; measured 1.3e-6 with 1 or 2 threads).
        assert relative_error(loaded.unet(x, *args), want) < GRAPH_TOLERANCE


def test_checkpoint_is_the_lightning_layout(tiny_ckpt):
    raw = torch.load(tiny_ckpt, weights_only=True)
    assert set(raw) == {"state_dict"}
    assert "model.diffusion_model.fps_embedding.0.weight" in raw["state_dict"]
    assert (
        "cond_stage_model.model.transformer.resblocks.2.attn.in_proj_weight" in raw["state_dict"]
    )  # unused last block
    assert "embedder.model.visual.proj" in raw["state_dict"]


def test_256_layout_uses_the_released_fs_name_and_is_detected(tiny_256_model, tmp_path):
    path = dcrt.save_checkpoint(tiny_256_model, tmp_path / "model.ckpt")
    keys = read_state_dict(path).keys()
    assert "model.diffusion_model.framestride_embed.0.weight" in keys
    assert not any("fps_embedding" in k for k in keys)
    loaded = dcrt.load_model(path)  # preset detected from the keys
    assert loaded.preset.name == "tiny-256"
    _same_weights(tiny_256_model, loaded)


def test_either_fs_name_loads(tiny_256_model, tmp_path):
    state = {k.replace("framestride_embed", "fps_embedding"): v for k, v in original_state_dict(tiny_256_model).items()}
    torch.save({"state_dict": state}, tmp_path / "renamed.ckpt")
    _same_weights(tiny_256_model, dcrt.load_model(tmp_path / "renamed.ckpt", preset="tiny-256"))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_safetensors_load(tiny_model, tmp_path, dtype):
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in original_state_dict(tiny_model).items()}
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "half.safetensors")
    loaded = dcrt.load_model(tmp_path / "half.safetensors", preset="tiny", dtype=dtype)
    assert loaded.dtype == dtype and loaded.schedule.alphas_cumprod.dtype == torch.float32
    assert torch.equal(loaded.unet.out[2].weight, tiny_model.unet.out[2].weight.to(dtype))


def test_wrong_preset_names_first_mismatching_keys(tiny_ckpt):
    with pytest.raises(CheckpointError) as err:
        dcrt.load_model(tiny_ckpt, preset="tiny-256")
    msg = str(err.value)
    assert "does not match preset 'tiny-256'" in msg and "\n" not in msg
    assert "attn2.alpha" in msg  # the keys the other preset expects


def test_full_preset_against_tiny_checkpoint_names_shapes(tiny_ckpt):
    with pytest.raises(CheckpointError, match=r"shape mismatch: .*\[\d+, \d+.*\(preset wants \[\d+"):
        dcrt.load_model(tiny_ckpt, preset="512")


def test_missing_and_unexpected_keys(tiny_model, tmp_path):
    state = original_state_dict(tiny_model)
    state.pop("embedder.model.logit_scale")  # a declared unused key is still required
    state["model.diffusion_model.extra.weight"] = torch.ones(1)
    torch.save({"state_dict": state}, tmp_path / "bad.ckpt")
    with pytest.raises(
        CheckpointError, match="1 missing: embedder.model.logit_scale; 1 unexpected: model.diffusion_model.extra"
    ):
        dcrt.load_model(tmp_path / "bad.ckpt", preset="tiny")


def test_ambiguous_layouts_need_a_preset_name(tmp_path):
    with torch.device("meta"):
        shapes = expected_shapes("512")
    from dcrt.families.dynamicrafter.checkpoint import detect_preset

    with pytest.raises(UsageError, match="512, 1024, 512-interp"):
        detect_preset(shapes)
    assert detect_preset(expected_shapes("256")).name == "256"


def test_truncated_checkpoint(tiny_ckpt, tmp_path):
    data = tiny_ckpt.read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or not a PyTorch checkpoint"):
        dcrt.load_model(tmp_path / "cut.ckpt")


def test_not_a_file(tmp_path):
    with pytest.raises(UsageError, match="does not exist or is not a file"):
        dcrt.load_model(tmp_path)


class _RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {_RunsCode.marker}",))


def test_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    _RunsCode.marker = marker
    torch.save({"state_dict": {"a": torch.ones(1)}, "payload": _RunsCode()}, tmp_path / "evil.ckpt")
    with pytest.raises(CheckpointError, match=r"refusing to unpickle (posix|os)\.system"):
        dcrt.load_model(tmp_path / "evil.ckpt")
    assert not marker.exists()


def test_lightning_metadata_objects_are_inert(tiny_model, tmp_path, monkeypatch):
    # A stand-in for the trainer objects a Lightning checkpoint pickles next to its state_dict.
    import types

    module = types.ModuleType("pytorch_lightning")

    class ModelCheckpoint:
        def __setstate__(self, state):
            raise AssertionError("metadata code must never run on load")

    ModelCheckpoint.__module__, ModelCheckpoint.__qualname__ = module.__name__, "ModelCheckpoint"
    module.ModelCheckpoint = ModelCheckpoint
    monkeypatch.setitem(sys.modules, module.__name__, module)
    obj = ModelCheckpoint.__new__(ModelCheckpoint)
    obj.__dict__["best"] = 1.0
    state = original_state_dict(tiny_model)
    torch.save({"state_dict": state, "callbacks": {"ModelCheckpoint": obj}, "epoch": 3}, tmp_path / "lightning.ckpt")
    monkeypatch.delitem(sys.modules, module.__name__)
    _same_weights(tiny_model, dcrt.load_model(tmp_path / "lightning.ckpt", preset="tiny"))


def test_zip_without_state_dict(tmp_path):
    torch.save({"weights": [1, 2]}, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="no state_dict of tensors"):
        dcrt.load_model(tmp_path / "other.ckpt")


_WIDE_TINY = (
    "import dataclasses, dcrt;"
    "tiny = dcrt.get_preset('tiny');"
    "preset = dataclasses.replace(tiny, name='tiny-wide', text=dataclasses.replace(tiny.text, width=256));"
)


def test_loading_does_not_copy_the_file_into_memory(tmp_path):
    # Tensors are memory-mapped: loading must not cost the file's size in resident memory.
    # A tiny model with 256-wide token embeddings makes a ~130 MB file, well above import noise.
    path = tmp_path / "wide.ckpt"
    make = _WIDE_TINY + f"dcrt.save_checkpoint(dcrt.random_model(preset), r'{path}')"
    subprocess.run([sys.executable, "-c", make], check=True)
    size_mb = path.stat().st_size / 2**20
    load = _WIDE_TINY + (
        "import resource;"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss;"
        f"m = dcrt.load_model(r'{path}', preset=preset);"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss;"
        "print((after - before) / 1024)"
    )
    grown_mb = float(subprocess.run([sys.executable, "-c", load], capture_output=True, text=True, check=True).stdout)
    assert size_mb > 100
    assert grown_mb < 0.25 * size_mb, (grown_mb, size_mb)


def test_tooncrafter_layout_is_detected():
    # docs/models.md §6.2: the 512 keys plus 148 decoder keys (mix factors, temporal blocks, refinements)
    from dcrt.families.dynamicrafter.checkpoint import detect_preset

    toon, released = expected_shapes("tooncrafter"), expected_shapes("512")
    assert len(toon) == len(released) + 148 and set(released) <= set(toon)
    assert {k.split(".")[2] for k in set(toon) - set(released)} == {"mid", "up", "conv_out", "attn_refinement"}
    assert detect_preset(toon).name == "tooncrafter"


@pytest.fixture(scope="module")
def tiny_toon_ckpt(tmp_path_factory):
    return dcrt.save_checkpoint(dcrt.random_model("tiny-tooncrafter", seed=0), tmp_path_factory.mktemp("t") / "m.ckpt")


def test_tooncrafter_round_trip_and_detection(tiny_toon_ckpt):
    model = dcrt.load_model(tiny_toon_ckpt)
    assert model.preset.name == "tiny-tooncrafter"
    _same_weights(model, dcrt.random_model("tiny-tooncrafter", seed=0))


def test_dynamicrafter_and_tooncrafter_checkpoints_are_not_interchangeable(tiny_ckpt, tiny_toon_ckpt):
    with pytest.raises(CheckpointError, match=r"preset 'tiny-tooncrafter': 148 missing: first_stage_model\.decoder"):
        dcrt.load_model(tiny_ckpt, preset="tiny-tooncrafter")
    with pytest.raises(CheckpointError, match=r"preset 'tiny': 148 unexpected: first_stage_model\.decoder"):
        dcrt.load_model(tiny_toon_ckpt, preset="tiny")


def test_a_file_that_is_not_a_checkpoint_is_said_plainly(tmp_path):
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not the zip archive torch.save writes") as refused:
        dcrt.load_model(tmp_path / "notes.ckpt")
    assert "_use_new_zipfile_serialization" not in str(refused.value)
