"""What every family's checkpoint module shares: reading untrusted weight files (a Lightning pickle, of which only
tensors and a few inert metadata types are unpickled, or memory-mapped safetensors), checking a file's keys and
shapes against a preset's layout, and seeded random weights.

Files are untrusted: tensors are memory-mapped rather than read (a 10 GB file needs no 10 GB copy), and anything
but tensors (and inert Lightning metadata) is refused.
"""

from __future__ import annotations

import math
import os
import pickle
import zlib
from pathlib import Path

import torch

from dcrt.errors import CheckpointError, UsageError


def check_layout(got: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]], preset_name: str) -> None:
    """Raise one line naming the first missing, unexpected and mis-shaped keys of `got` against `expected`."""
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    wrong = [f"{k} {list(got[k])} (preset wants {list(v)})" for k, v in expected.items() if k in got and got[k] != v]
    if missing or unexpected or wrong:
        parts = []
        for label, items in (("shape mismatch", wrong), ("missing", missing), ("unexpected", unexpected)):
            if items:
                parts.append(f"{len(items)} {label}: {', '.join(items[:3])}{' ...' if len(items) > 3 else ''}")
        raise CheckpointError(f"checkpoint does not match preset {preset_name!r}: {'; '.join(parts)}")


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor_v3"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch", "Size"),
    ("torch.storage", "UntypedStorage"),
    ("torch.storage", "TypedStorage"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "object"),
    ("copyreg", "_reconstructor"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
}


_TORCH_TYPE_SUFFIXES = ("Storage", "float16", "float32", "float64", "bfloat16", "int64", "int32", "uint8", "bool")


# Lightning stores trainer/callback/hyper-parameter objects beside the state_dict. They become inert
# placeholders: their classes are never imported and none of their code runs.
_INERT_MODULE_PREFIXES = ("pytorch_lightning", "lightning", "lightning_fabric", "omegaconf", "argparse", "typing")


class _Inert:
    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED_GLOBALS or (module == "torch" and name.endswith(_TORCH_TYPE_SUFFIXES)):
            return super().find_class(module, name)
        if module.split(".")[0] in _INERT_MODULE_PREFIXES:
            return _Inert
        raise CheckpointError(f"refusing to unpickle {module}.{name}: checkpoints may only contain tensors")


class _RestrictedPickle:
    """The `pickle_module` torch.load uses: a pickle whose Unpickler admits tensors only."""

    __name__ = "dcrt_restricted_pickle"
    Unpickler = _RestrictedUnpickler

    @staticmethod
    def load(file, **kwargs):
        return _RestrictedUnpickler(file, **kwargs).load()


def _read_pickle_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", mmap=True, weights_only=False, pickle_module=_RestrictedPickle)
    except CheckpointError:
        raise
    except Exception as exc:  # torch raises RuntimeError, EOFError, UnpicklingError, ... for damaged files
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "_use_new_zipfile_serialization" in first_line:  # torch's words for "not a zip archive" under mmap
            first_line = "it is not the zip archive torch.save writes"
        raise CheckpointError(f"cannot read checkpoint {path}: truncated or not a PyTorch checkpoint ({first_line})")
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} holds no state_dict of tensors")
    return state


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path)  # memory-mapped
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read safetensors file {path}: {exc}") from None


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Original-layout tensors of a `.ckpt`/`.pt`/`.pth` (Lightning pickle) or `.safetensors` file."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"checkpoint {path} does not exist or is not a file")
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    return _read_pickle_checkpoint(path)


def random_tensor(
    key: str, shape: tuple[int, ...], seed: int, is_norm_weight: bool, g: torch.Generator
) -> torch.Tensor:
    """A seeded tensor per key (independent of build order), every element non-zero almost surely.

    Norm weights sit near 1, biases and scalars near 0, matrices at 1/sqrt(fan_in), so activations
    stay O(1) through the full-depth networks.
    """
    g.manual_seed(seed * 1_000_003 + zlib.crc32(key.encode()))
    x = torch.randn(shape, generator=g, device=g.device)
    if is_norm_weight:
        return 1.0 + 0.1 * x
    if len(shape) <= 1:
        return 0.05 * x if not key.endswith(".alpha") else 0.5 * x
    is_layer_weight = key.endswith(".weight") or key.endswith("_weight")
    fan_in = math.prod(shape[1:]) if is_layer_weight else shape[-1]
    return x / fan_in**0.5


def norm_weight_keys(model: torch.nn.Module, components) -> set[tuple[str, str]]:
    """(component, key) of every GroupNorm / LayerNorm weight of the named components."""
    keys = set()
    for component in components:
        for name, module in getattr(model, component).named_modules():
            if isinstance(module, (torch.nn.GroupNorm, torch.nn.LayerNorm)):
                keys.add((component, f"{name}.weight"))
    return keys


# Weight precisions by the names the command line and reports use.
WEIGHT_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
