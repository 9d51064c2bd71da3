"""PyTorch reference modules, one file per component."""

from dcrt.models.dynamicrafter import DynamiCrafter

__all__ = ["DynamiCrafter"]
