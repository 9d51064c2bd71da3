"""dcrt: an inference engine for the DynamiCrafter image-to-video models."""

from dcrt.checkpoint import load_model, random_model, save_checkpoint
from dcrt.config import PRESETS, Preset, get_preset
from dcrt.models import DynamiCrafter
from dcrt.pipeline import VideoResult, animate, interpolate, loop

__version__ = "0.1.0"

__all__ = [
    "PRESETS",
    "DynamiCrafter",
    "Preset",
    "VideoResult",
    "__version__",
    "animate",
    "get_preset",
    "interpolate",
    "load_model",
    "loop",
    "random_model",
    "save_checkpoint",
]
