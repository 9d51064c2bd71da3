"""dcrt tokenize / dcrt noise: the C++ host's inputs are the arrays the Python pipeline itself uses."""

from __future__ import annotations

import numpy as np
import torch

from dcrt.families.common import NoiseSource
from dcrt.families.dynamicrafter.options import resolve_options
from dcrt.models.tokenizer import Tokenizer
from dcrt.presets import get_preset


def test_tokenize_writes_prompt_and_empty_prompt(run_cli, tmp_path):
    code, out, _ = run_cli(["tokenize", "a boat sailing", "--res", "tiny", "-o", str(tmp_path / "t.npy")])
    assert code == 0 and out.strip() == str(tmp_path / "t.npy")
    tokens = np.load(tmp_path / "t.npy")
    assert tokens.dtype == np.int64 and tokens.shape == (2, 77)
    np.testing.assert_array_equal(tokens, Tokenizer(77)(["a boat sailing", ""]).numpy())


def test_noise_is_the_pipelines_draws_in_order(run_cli, tmp_path):
    """x_T, then one draw per step, from the run's seed: what `Pipeline.sample` draws on the CPU."""
    args = ["noise", "--res", "tiny", "--steps", "3", "--seed", "7", "-o", str(tmp_path / "n.npy")]
    assert run_cli(args)[0] == 0
    noise = np.load(tmp_path / "n.npy")
    opts = resolve_options(get_preset("tiny"), "animate", steps=3, seed=7)
    source, shape = NoiseSource(7, "cpu"), (1, 4, 16, 8, 8)
    expected = [source.draw_initial(shape, opts.windows("animate"), 7)] + [source.draw(shape) for _ in range(3)]
    assert noise.dtype == np.float32 and noise.shape == (4, *shape)
    np.testing.assert_array_equal(noise, torch.stack(expected).numpy())


def test_noise_without_eta_is_x_T_only(run_cli, tmp_path):
    assert run_cli(["noise", "--res", "tiny", "--eta", "0", "-o", str(tmp_path / "n.npy")])[0] == 0
    assert np.load(tmp_path / "n.npy").shape == (1, 1, 4, 16, 8, 8)


def test_host_inputs_refuse_other_files_in_one_line(run_cli, tmp_path):
    code, _, err = run_cli(["noise", "--res", "tiny", "-o", str(tmp_path / "n.bin")])
    assert code == 2 and "name the output <name>.npy" in err and not (tmp_path / "n.bin").exists()
    code, _, err = run_cli(["noise", "--res", "tiny", "--steps", "0", "-o", str(tmp_path / "n.npy")])
    assert code == 2 and "steps must be at least 1" in err
