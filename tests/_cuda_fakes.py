"""The simulated CUDA device the tests run GPU paths on: benchmarks/simulated_cuda.py (the memory estimate runs
inside it too)."""

import sys
from pathlib import Path

# Appended, not prepended: benchmarks/parity.py must not shadow the top-level parity package.
sys.path.append(str(Path(__file__).resolve().parents[1] / "benchmarks"))
from simulated_cuda import DEVICE, HostSync, SimulatedCuda, fake_model, frames_shape_only, simulated_cuda  # noqa: E402

__all__ = ["DEVICE", "HostSync", "SimulatedCuda", "fake_model", "frames_shape_only", "simulated_cuda"]
