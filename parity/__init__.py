"""Parity harnesses: dcrt checked against the original implementations, for tests and benchmarks only.

Not part of the installed package (pyproject ships `dcrt*` only): tests and benchmarks import it with the
repository root on sys.path (`python -m pytest` from the root; the parity benchmarks insert the root).

    dynamicrafter/  the original DynamiCrafter / ToonCrafter code, imported from a checkout ($DCRT_REFERENCE_REPO)

Stable Video Diffusion's reference is the diffusers library itself: dcrt.families.svd.baseline builds its
pipeline at a preset's architecture (also `dcrt bench`'s baseline), tests/models/svd_diffusers.py seeds it.
"""
