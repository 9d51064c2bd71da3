"""dcrt vs the original ToonCrafter code on identical weights (fp32, CPU): every component, the dual-ref VAE at
both clip lengths, and sampling end to end (latents after 5 DDIM steps, and the two-pass decoded frames).

Runs only when $DCRT_TOONCRAFTER_REPO names a checkout of github.com/ToonCrafter/ToonCrafter (imported from there,
never vendored; see parity/dynamicrafter/original.py and sampling.py for what is stubbed and patched). Needs the
`[parity]` extra. Full widths are marked `full`.
"""

from __future__ import annotations

import pytest

from dcrt.presets import get_preset
from parity.dynamicrafter import components
from parity.dynamicrafter.original import TOONCRAFTER_ENV_VAR, reference_repo

pytestmark = pytest.mark.skipif(
    reference_repo(get_preset("tooncrafter")) is None,
    reason=f"set ${TOONCRAFTER_ENV_VAR} to a checkout of the original ToonCrafter code to run its parity tests",
)

COMPONENT_TOL = 1e-4  # fp32 on both sides; only summation order differs
LATENT_TOL = 1e-3
SAMPLER_SIZE = (128, 128)  # as the DynamiCrafter sampler parity: no 1x1 GroupNorm groups in the tiny UNet


def _components(preset: str, tmp_path, sizes: components.ParitySizes, parts=tuple(components.PARTS)):
    import dcrt

    model = dcrt.random_model(preset, seed=0)
    path = dcrt.save_checkpoint(model, tmp_path / f"{preset}.ckpt")
    results = components.run_parity(model, components.load_checkpoint_state_dict(path), sizes, parts)
    table = "\n".join(f"  {k:24s} rel {d.rel:.2e}  max_abs {d.max_abs:.2e}" for k, d in results.items())
    bad = [k for k, d in results.items() if not d.rel < COMPONENT_TOL]  # `not <` also catches NaN
    assert not bad, f"components above rel {COMPONENT_TOL:g}: {bad}\n{table}"
    return results


def test_component_parity_tiny(tmp_path):
    results = _components("tiny-tooncrafter", tmp_path, components.ParitySizes(batch=2))
    assert {"vae_decoder@16_frames", "vae_decoder@14_frames", "vae_reference_4"} <= set(results)


@pytest.mark.full
def test_dual_ref_vae_parity_full_width(tmp_path):
    # the released decoder's widths (65.78 M parameters) at 64x64 pixels
    _components("tooncrafter", tmp_path, components.ParitySizes(batch=1), parts=("vae",))


def test_sampler_parity_tiny(tmp_path):
    from parity.dynamicrafter import sampling

    model, state_dict = sampling.prepare("tiny-tooncrafter", "tiny-tooncrafter", tmp_path)
    cases = [
        sampling.SamplerCase("interpolate", multi_cond=False, eta=1.0),
        sampling.SamplerCase("interpolate", multi_cond=True, eta=0.0),
        sampling.SamplerCase("loop", multi_cond=False, eta=1.0),
    ]
    results = sampling.compare_sampling(model, state_dict, cases, *SAMPLER_SIZE)
    table = "\n".join(f"  {c.label:24s} rel {d.rel:.2e} frames {d.frame_levels}" for c, d in results.items())
    # latents within 1e-3; frames decoded by the two-pass decode within one uint8 level (truncation boundaries)
    assert all(d.rel < LATENT_TOL and d.frame_levels <= 1 for d in results.values()), table


@pytest.mark.full
def test_sampler_parity_full_size(tmp_path):
    """The released architecture end to end at 64x64 (as DynamiCrafter's full-size sampler parity), one case:
    interpolation with stochastic DDIM, 5 steps; latents and the two-pass decoded frames."""
    from parity.dynamicrafter import sampling

    model, state_dict = sampling.prepare("tooncrafter", "tooncrafter", tmp_path)
    case = sampling.SamplerCase("interpolate", multi_cond=False, eta=1.0)
    results = sampling.compare_sampling(model, state_dict, [case], 64, 64)
    d = results[case]
    conditioning = ", ".join(f"{k} {v:.2e}" for k, v in d.conditioning.items())
    print(
        f"tooncrafter 64x64 {case.label}: latents rel {d.rel:.2e}, frames within {d.frame_levels} levels; "
        f"UNet outputs max rel {max(d.model_outputs):.2e}; conditioning {conditioning}"
    )
    assert d.rel < LATENT_TOL and d.frame_levels <= 1
