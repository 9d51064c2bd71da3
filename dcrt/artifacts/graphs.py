"""What the IO tables are made of: a graph's tensor (TensorSpec: name, dtype, static shape) and a graph's inputs
and outputs (ComponentSpec). The tables themselves are per family: dcrt.families.dynamicrafter.io_spec (DynamiCrafter's, and the family
dispatch every reader goes through), dcrt.families.svd.io_spec (Stable Video Diffusion's)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

_DTYPES = {"float32": torch.float32, "int64": torch.int64}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # "float32" or "int64"
    shape: tuple[int, ...]

    @property
    def torch_dtype(self) -> torch.dtype:
        return _DTYPES[self.dtype]

    def as_dict(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


@dataclass(frozen=True)
class ComponentSpec:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def filename(self) -> str:
        return f"{self.name}.onnx"

    @property
    def batch(self) -> int:
        return self.inputs[0].shape[0]

    def as_dict(self) -> dict:
        return {
            "file": self.filename,
            "inputs": [t.as_dict() for t in self.inputs],
            "outputs": [t.as_dict() for t in self.outputs],
        }
