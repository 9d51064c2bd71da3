"""dcrt: an inference engine for the DynamiCrafter image-to-video models."""

from dcrt.checkpoint import load_model, random_model, save_checkpoint
from dcrt.config import PRESETS, Preset, get_preset
from dcrt.models import DynamiCrafter

__version__ = "0.1.0"

__all__ = ["PRESETS", "DynamiCrafter", "Preset", "__version__", "get_preset", "load_model", "random_model", "save_checkpoint"]
