"""dcrt vs the original DynamiCrafter code on identical weights (fp32, CPU).

Runs only when $DCRT_REFERENCE_REPO names a checkout of github.com/Doubiiu/DynamiCrafter (the original code
is imported from there, never vendored). Needs the `[parity]` extra (kornia). Tiny presets run by default;
the released-size presets are marked `full` (minutes each and ~16 GB of RAM).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from parity.dynamicrafter import components
from parity.dynamicrafter.original import ENV_VAR, reference_repo

pytestmark = pytest.mark.skipif(
    reference_repo() is None,
    reason=f"set ${ENV_VAR} to a checkout of the original DynamiCrafter code to run parity tests",
)

REL_TOL = 1e-4  # fp32 on both sides; only summation order differs


def _parity(preset: str, tmp_path: Path, sizes: components.ParitySizes) -> dict[str, components.Diff]:
    import dcrt

    model = dcrt.random_model(preset, seed=0)
    model.eval()
    path = tmp_path / f"{preset}.ckpt"
    dcrt.save_checkpoint(model, path)
    state_dict = components.load_checkpoint_state_dict(path)
    return components.run_parity(model, state_dict, sizes)


def _assert_close(results: dict[str, components.Diff]) -> None:
    table = "\n".join(f"  {k:24s} rel {d.rel:.2e}  max_abs {d.max_abs:.2e}" for k, d in results.items())
    bad = [k for k, d in results.items() if not d.rel < REL_TOL]  # `not <` also catches NaN
    assert not bad, f"components above rel {REL_TOL:g}: {bad}\n{table}"


@pytest.mark.parametrize("preset", ["tiny", "tiny-256"])
def test_parity_tiny(preset, tmp_path):
    _assert_close(_parity(preset, tmp_path, components.ParitySizes(batch=2)))


@pytest.mark.full
@pytest.mark.parametrize("preset", ["256", "512"])
def test_parity_full(preset, tmp_path):
    _assert_close(_parity(preset, tmp_path, components.ParitySizes(batch=1)))


@torch.no_grad()
def test_reference_text_tower_is_sequence_first(tmp_path):
    """Guards the harness's open_clip 3.x patch: with the original's sequence-first layout restored, each
    prompt's embedding is independent of what else is in the batch (batch-first would mix them)."""
    import open_clip

    import dcrt

    model = dcrt.random_model("tiny", seed=0)
    dcrt.save_checkpoint(model, tmp_path / "tiny.ckpt")
    ref = components.build_reference_components(
        model.preset, components.load_checkpoint_state_dict(tmp_path / "tiny.ckpt"), parts=("text",)
    )["text"]
    tokens = open_clip.tokenize(list(components.PROMPTS))
    together = ref.encode_with_transformer(tokens)
    alone = torch.cat([ref.encode_with_transformer(tokens[i : i + 1]) for i in range(len(tokens))])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)
