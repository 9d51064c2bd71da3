"""An export or engine bundle serves a run only when it holds the weights the run asks for (dcrt.weights)."""

import os
import shutil

import numpy as np
import pytest

from dcrt.weights import Weights, made_from

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
