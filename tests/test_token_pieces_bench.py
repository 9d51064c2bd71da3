"""benchmarks/token_pieces.py at a tiny size: it runs, writes its JSON and table, and the pieces match the whole."""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Appended, not prepended: benchmarks/parity.py must not shadow the top-level parity package.
sys.path.append(str(REPO / "benchmarks"))

import token_pieces  # noqa: E402


def test_the_block_is_the_1024_presets_first_level():
    shape = token_pieces.block_shape()
    assert (shape["channels"], shape["heads"], shape["head_dim"]) == (320, 5, 64)
    assert shape["latent_hw"] == (72, 128) and shape["full_pixels"] == 9216
    assert token_pieces.pieces(2 * 9216, 2**18) == 2 and token_pieces.pieces(2 * 9216, 2**14) == 18


def test_a_tiny_run_writes_its_json_and_every_piece_equals_the_whole(tmp_path, capsys):
    argv = ["--pixels", "8", "--repeats", "2", "--threads", "1", "--extra-chunks", "64", "--out", str(tmp_path)]
    assert token_pieces.main(argv) == 0
    report = json.loads((tmp_path / "token-pieces-cpu-fp32-8px.json").read_text())
    assert report["command"] == "token_pieces.py " + " ".join(argv)
    assert report["device"].startswith("CPU: ") and report["threads"] == 1
    assert report["settings"]["x_shape"] == [16, 16, 320] and report["settings"]["tokens"] == 256
    rows = {r["variant"]: r for r in report["results"]}
    assert list(rows) == ["whole", "fast", "balanced", "low", "chunk 64"]
    assert rows["whole"]["ratio_to_whole"] == 1.0 and rows["chunk 64"]["pieces"] == 4  # 4 sequences of 16 a piece
    for name, row in rows.items():
        assert row["median_ms"] > 0 and row["peak_mib"] > 0, name
        assert row["vs_whole"]["bitwise_equal"] or row["vs_whole"]["max_abs_diff"] < 1e-5, name
    table = (tmp_path / "token-pieces-cpu-fp32-8px.md").read_text()
    assert "| chunk 64 | 64 | 4 |" in table and table in capsys.readouterr().out
