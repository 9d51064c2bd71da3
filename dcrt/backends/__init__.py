"""Interchangeable executors of the five networks. The pipeline only sees `Backend`: the PyTorch one, or a runtime of
static-shape graphs (ONNX Runtime, TensorRT, AOTInductor) behind its model family's adapter (dcrt.backends.static).

`Backend` and `TorchBackend` are imported on first use, so that `dcrt.backends.select` (which backend a run
uses) can answer without importing torch.
"""

from importlib import import_module

_API = {"Backend": "dcrt.families.dynamicrafter.backend", "TorchBackend": "dcrt.families.dynamicrafter.torch_backend"}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'dcrt.backends' has no attribute {name!r}")
    value = getattr(import_module(_API[name]), name)
    globals()[name] = value
    return value
