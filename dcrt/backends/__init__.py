"""Interchangeable executors of the five networks. The pipeline only sees `Backend`."""

from dcrt.backends.base import Backend
from dcrt.backends.torch_backend import TorchBackend

__all__ = ["Backend", "TorchBackend"]
