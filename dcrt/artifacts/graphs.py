"""What the IO tables are made of: a graph's tensor (TensorSpec: name, dtype, static shape) and a graph's inputs
and outputs (ComponentSpec), and the one way every reader gets a preset's table (`io_table`) and realistic inputs
for one of its graphs (`sample_inputs`). The tables themselves are each family's (dcrt.families.<family>.io_spec).

Float tensors cross every graph boundary as float32 whatever the precision inside (an fp16 graph casts at its
edges), so a host never converts. Export, sample inputs, buffer allocation, the manifests and the engine builds all
read these tables; no shape is restated anywhere else."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dcrt.families import family_of

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


def io_table(preset, height: int | None = None, width: int | None = None) -> dict[str, ComponentSpec]:
    """The graphs of one preset at one resolution (default: the preset's), from its family's table."""
    return family_of(preset).part("io_table")(preset, height or preset.height, width or preset.width)


def sample_inputs(spec: ComponentSpec, preset, seed: int = 0) -> list[torch.Tensor]:
    """Realistic random inputs for one graph of `preset` (its family's ranges: token ids in the vocabulary, ...)."""
    return family_of(preset).part("sample_inputs")(spec, preset, seed)
