"""Parity with the ORIGINAL DynamiCrafter code (github.com/Doubiiu/DynamiCrafter), on the same weights.

For parity checks only (tests/models/test_parity*.py, tests/families/dynamicrafter/test_parity_sampler.py,
benchmarks/parity*.py): it lives outside the dcrt package, so it is never installed and no module of dcrt imports it.
The original code is never copied into this project; it is imported from the checkout named by $DCRT_REFERENCE_REPO (or
ToonCrafter's, $DCRT_TOONCRAFTER_REPO), and callers skip when that is unset.

    original.py    locating and importing the original checkout; the stubs and patches that let it run
    components.py  each original component built from a dcrt preset, strictly loaded, compared per component
    dual_ref.py    ToonCrafter's dual-reference VAE against the original `AutoencoderKL_Dualref`
    model.py       the original LatentVisualDiffusion built from a dcrt preset (what its sampler drives)
    sampling.py    dcrt.animate / interpolate / loop against the original `image_guided_synthesis`

Needs the `[parity]` extra (kornia), which the original imports.
"""
