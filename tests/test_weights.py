"""An export or engine bundle serves a run only when it holds the weights the run asks for (dcrt.weights)."""

import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import dcrt
from dcrt.artifacts.export import ExportRequest, export_model, is_up_to_date
from dcrt.artifacts.manifest import ExportManifest, file_stamp
from dcrt.weights import Weights, made_from, required_weights

TINY = ["--res", "tiny", "--steps", "2"]


@pytest.fixture(scope="module")
def ckpt_export(exported, tiny_ckpt, tmp_path_factory):
    """The tiny export, recorded as made from `tiny_ckpt`: its graphs are tiny_model's, which that file holds."""
    out = tmp_path_factory.mktemp("ckpt_export") / "tiny"
    shutil.copytree(exported[0], out)
    manifest = ExportManifest.read(out)
    manifest.source, manifest.source_stamp = Weights("tiny", tiny_ckpt).source(), file_stamp(tiny_ckpt)
    manifest.write(out)
    return out


@pytest.fixture(scope="module")
def other_ckpt(tmp_path_factory):
    return dcrt.save_checkpoint(dcrt.random_model("tiny", seed=1), tmp_path_factory.mktemp("other") / "other.ckpt")


@pytest.fixture
def picture(tmp_path):
    path = tmp_path / "in.png"
    Image.fromarray((np.random.default_rng(1).random((60, 90, 3)) * 255).astype(np.uint8)).save(path)
    return path


def _animate(run_cli, picture, out, *args):
    return run_cli(["animate", str(picture), "a boat", *TINY, "--format", "png", "-o", str(out), *map(str, args)])


def _frames(folder):
    return [p.read_bytes() for p in sorted(folder.iterdir())]


def test_auto_uses_an_export_only_when_made_from_the_requested_weights(
    ckpt_export, tiny_ckpt, other_ckpt, picture, tmp_path, run_cli
):
    code, _, err = _animate(run_cli, picture, tmp_path / "same", "--ckpt", str(tiny_ckpt), "--export-dir", ckpt_export)
    assert code == 0, err
    assert f"dcrt: using ort on cpu with {ckpt_export}, weights {tiny_ckpt}" in err.splitlines()

    code, _, err = _animate(run_cli, picture, tmp_path / "auto", "--ckpt", str(other_ckpt), "--export-dir", ckpt_export)
    assert code == 0, err
    notice = (
        f"dcrt: notice: not using {ckpt_export}: it was made from {tiny_ckpt.resolve()}, not {other_ckpt} "
        f"(re-export it from those weights with `dcrt export --res tiny --out {ckpt_export} --ckpt {other_ckpt}` "
        "to use it)"
    )
    assert notice in err.splitlines()
    assert f"dcrt: using torch on cpu, weights {other_ckpt}" in err.splitlines()
    code, _, err = _animate(run_cli, picture, tmp_path / "torch", "--ckpt", str(other_ckpt), "--backend", "torch")
    assert code == 0, err
    assert _frames(tmp_path / "auto") == _frames(tmp_path / "torch")  # the checkpoint asked for, not the export's
    assert _frames(tmp_path / "auto") != _frames(tmp_path / "same")


def test_named_backend_with_other_weights_or_size_is_an_error(
    ckpt_export, tiny_ckpt, other_ckpt, picture, tmp_path, run_cli
):
    remake = f"dcrt export --res tiny --out {ckpt_export}"
    cases = [
        (
            ["--ckpt", other_ckpt],
            f"{ckpt_export} was made from {tiny_ckpt.resolve()}, not {other_ckpt}: re-export it from those weights "
            f"with `{remake} --ckpt {other_ckpt}`, or choose --backend torch",
        ),
        (
            ["--random-weights"],
            f"not random:tiny:seed0: re-export it from those weights with `{remake} --random-weights`, "
            "or choose --backend torch",
        ),
        (
            ["--height", "128"],
            f"{ckpt_export} holds 64x64 graphs, not 128x64: re-export it at that size with "
            f"`{remake} --height 128 --width 64`, or choose --backend torch",
        ),
    ]
    for args, message in cases:
        code, _, err = _animate(
            run_cli, picture, tmp_path / "out", "--backend", "ort", "--export-dir", ckpt_export, *args
        )
        assert code == 2 and err.startswith("dcrt: error: ") and message in err, err
        assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_auto_passes_over_an_export_of_another_size(exported, picture, tmp_path, run_cli):
    code, _, err = _animate(run_cli, picture, tmp_path / "o", "--height", "128", "--export-dir", exported[0])
    assert code == 0, err
    assert f"dcrt: notice: not using {exported[0]}: it holds 64x64 graphs, not 128x64" in err
    assert "dcrt: using torch on cpu, weights random:tiny:seed0" in err.splitlines()
    with Image.open(tmp_path / "o" / "000.png") as frame:
        assert frame.size == (64, 128)


def test_no_checkpoint_beside_an_export_is_an_error(ckpt_export, picture, tmp_path, run_cli):
    import fractions

    empty, noise, unsafe = tmp_path / "empty.ckpt", tmp_path / "noise.ckpt", tmp_path / "unsafe.ckpt"
    empty.write_bytes(b"")
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    torch.save({"state_dict": {}, "payload": fractions.Fraction(1, 3)}, unsafe)
    for path, message in [
        (tmp_path / "missing.ckpt", "does not exist"),
        (empty, "empty.ckpt"),
        (noise, "noise.ckpt"),
        (unsafe, "refusing to unpickle"),
    ]:
        code, _, err = _animate(run_cli, picture, tmp_path / "o", "--ckpt", str(path), "--export-dir", ckpt_export)
        lines = err.splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("dcrt: error:") and message in lines[0], err
        assert not (tmp_path / "o").exists()


def test_export_records_the_checkpoint_stamp(ckpt_export, tiny_ckpt, tmp_path, run_cli):
    copy = tmp_path / "tiny"
    shutil.copytree(ckpt_export, copy)
    manifest = ExportManifest.read(copy)
    manifest.source_stamp = None  # as written before stamps existed
    manifest.write(copy)
    code, out, err = run_cli(["export", "--res", "tiny", "--ckpt", str(tiny_ckpt), "--out", str(copy)])
    assert code == 0 and "is up to date" in err, err
    assert ExportManifest.read(copy).source_stamp == file_stamp(tiny_ckpt)


def test_an_export_hashes_the_checkpoint_once_and_an_up_to_date_one_not_at_all(tiny_ckpt, tmp_path, hashed):
    """The build side of `dcrt build` / `dcrt export`: the weights asked for, the request, the up-to-date check,
    the export. A new export hashes the checkpoint once for its manifest; an up-to-date one is known by the stamp."""
    preset, out = dcrt.get_preset("tiny"), tmp_path / "export"

    def build_side(request_for):
        weights = required_weights(preset, tiny_ckpt)
        request = request_for(weights)
        if not is_up_to_date(out, request):
            export_model(dcrt.load_model(weights.checkpoint, preset=preset), out, request)

    # As the command line asks today: the source up front (hashed once, whatever follows asks for it again).
    build_side(lambda w: ExportRequest(preset, "fp32", w.source(), None, None, w.stamp()))
    assert hashed[tiny_ckpt.name] == 1 and ExportManifest.read(out).source == Weights("tiny", tiny_ckpt).source()
    hashed.clear()
    build_side(lambda w: ExportRequest.for_weights(w, preset))  # the source only when the stamp cannot decide
    assert hashed == {}


# ------------------------------------------------------------------------------------- the fingerprint


@pytest.fixture
def big_file(tmp_path):
    """A 3 MiB file: more than the 2 MiB a stamp reads."""
    path = tmp_path / "weights.safetensors"
    path.write_bytes(np.random.default_rng(0).bytes(3 << 20))
    return path


def _no_full_hash(monkeypatch):
    def refuse(*args):
        raise AssertionError("hashed the whole file")

    monkeypatch.setattr("dcrt.weights.sha256_file", refuse)


def test_the_same_file_matches_without_hashing_it(big_file, monkeypatch):
    weights = Weights("tiny", big_file)
    source, stamp = weights.source(), weights.stamp()
    _no_full_hash(monkeypatch)
    assert made_from(weights, source, stamp)
    os.truncate(big_file, (3 << 20) - 1)
    assert not made_from(weights, source, stamp)  # another size: no need to hash either


def test_a_copy_is_hashed_and_matches_a_changed_middle_does_not(big_file, tmp_path):
    recorded = Weights("tiny", big_file)
    source, stamp = recorded.source(), recorded.stamp()
    copy = tmp_path / "copy.safetensors"
    shutil.copy(big_file, copy)
    os.utime(copy, ns=(stamp["mtime_ns"] + 10**9, stamp["mtime_ns"] + 10**9))
    messages = []
    assert made_from(Weights("tiny", copy), source, stamp, messages.append)
    assert messages and "hashing" in messages[0]
    with open(copy, "r+b") as f:  # a fine-tune of one tensor in the middle: the edges do not change
        f.seek(3 << 19)
        f.write(b"\x00\x01\x02\x03")
    assert not made_from(Weights("tiny", copy), source, stamp)
    assert made_from(Weights("tiny", copy), Weights("tiny", copy).source(), None)  # an older manifest: hashed


def test_random_weights_match_only_their_own_source(big_file):
    assert made_from(Weights("tiny"), "random:tiny:seed0", None)
    assert not made_from(Weights("tiny-256"), "random:tiny:seed0", None)
    assert not made_from(Weights("tiny", big_file), "random:tiny:seed0", None)
    assert not made_from(Weights("tiny"), Weights("tiny", big_file).source(), None)
