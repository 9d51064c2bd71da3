"""Locating and importing the ORIGINAL DynamiCrafter code, and the stubs and patches that let it run here.

For parity checks only; never imported by dcrt's runtime. The original code (github.com/Doubiiu/DynamiCrafter)
is never copied into this project: it is imported from the checkout named by $DCRT_REFERENCE_REPO, or for a
preset with ToonCrafter's dual-ref decoder from a github.com/ToonCrafter/ToonCrafter checkout named by
$DCRT_TOONCRAFTER_REPO (`reference_repo(preset)`).

Deviations from running the original scripts, each needed to run the original code at all:
* Stub modules for `pytorch_lightning`, `cv2` and `transformers` (see `_STUBS`), installed only when the
  real package is not importable. None of them is on the inference path of the modules compared here.
  For the sampler (`import_reference_sampling`), in addition, if absent: `pytorch_lightning.utilities.
  rank_zero_only` (identity) and `seed_everything` (imported by ddpm3d.py / inference.py), and `omegaconf`
  (imported by inference.py, unused by `image_guided_synthesis`).
* The open_clip towers are built with `version=None` (no download; weights come from the checkpoint) from
  an architecture config registered from the preset (`open_clip_arch`; `ViT-H-14` for the released models).
* open_clip >= 2.23 builds its transformer blocks batch-first, while the original code (pinned to
  open_clip 2.22) feeds them sequence-first tensors. `restore_sequence_first` flips the flag back.
* Random initialisation is skipped while building (`skip_init`): every tensor is overwritten by the
  strict load, and initialising 2.6 B parameters on a CPU takes minutes.
* ToonCrafter's decoder calls `xformers.ops.memory_efficient_attention` with no fallback. Where xformers is
  absent, a stub (`_stub_xformers`: the same softmax attention by `scaled_dot_product_attention`, default scale
  1/sqrt(d)) is importable only while `lvdm.models.autoencoder` is imported, so the UNet's attention keeps the
  non-xformers path that the DynamiCrafter harness runs (the same math).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
import subprocess
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

ENV_VAR = "DCRT_REFERENCE_REPO"
TOONCRAFTER_ENV_VAR = "DCRT_TOONCRAFTER_REPO"
_DUAL_REF_MODULE = Path("lvdm") / "models" / "autoencoder_dualref.py"


# ------------------------------------------------------------------------------------------------
# Locating the checkout


def env_var_for(preset=None) -> str:
    """The variable naming the original checkout for `preset`: ToonCrafter's for a dual-ref decoder."""
    return TOONCRAFTER_ENV_VAR if preset is not None and preset.vae.dual_ref is not None else ENV_VAR


def reference_repo(preset=None) -> Path | None:
    """The original checkout for `preset` (default: DynamiCrafter's), or None when its variable is unset."""
    var = env_var_for(preset)
    value = os.environ.get(var)
    if not value:
        return None
    repo = Path(value).expanduser().resolve()
    if not (repo / "lvdm" / "modules" / "networks" / "openaimodel3d.py").is_file():
        raise FileNotFoundError(f"${var}={value} is not a DynamiCrafter or ToonCrafter checkout (no lvdm/ package)")
    if var == TOONCRAFTER_ENV_VAR and not (repo / _DUAL_REF_MODULE).is_file():
        raise FileNotFoundError(f"${var}={value} is not a ToonCrafter checkout (no {_DUAL_REF_MODULE})")
    return repo


def reference_commit(repo: Path) -> str | None:
    """Commit of the checkout: $DCRT_REFERENCE_COMMIT (for `git archive` exports), else `git rev-parse`."""
    if os.environ.get("DCRT_REFERENCE_COMMIT"):
        return os.environ["DCRT_REFERENCE_COMMIT"]
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True)
    except OSError:
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def environment(repo: Path) -> dict:
    """What a parity report records about the run: library versions, machine, and the original's commit."""
    import platform

    import kornia
    import open_clip

    return {
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "kornia": kornia.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
        "dtype": "float32",
        "device": "cpu",
        "reference_repo": "github.com/"
        + ("ToonCrafter/ToonCrafter" if (repo / _DUAL_REF_MODULE).is_file() else "Doubiiu/DynamiCrafter"),
        "reference_commit": reference_commit(repo),
    }


# ------------------------------------------------------------------------------------------------
# Importing the original code, with stubs for absent heavy dependencies


class Unavailable:
    """Placeholder for classes the original code imports but never uses on our path."""

    def __init__(self, *args, **kwargs):
        raise RuntimeError(f"{type(self).__name__} is a parity-harness stub; install the real package")

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        return cls()


def _stub_pytorch_lightning() -> types.ModuleType:
    # autoencoder.py subclasses pl.LightningModule; for inference it is only an nn.Module.
    mod = types.ModuleType("pytorch_lightning")
    mod.LightningModule = nn.Module
    return mod


def _stub_cv2() -> types.ModuleType:
    # utils/utils.py imports cv2 for an image-resize helper the compared modules never call.
    return types.ModuleType("cv2")


def _stub_transformers() -> types.ModuleType:
    # condition.py imports the HF T5 / CLIP classes for encoders DynamiCrafter does not use.
    mod = types.ModuleType("transformers")
    for name in ("T5Tokenizer", "T5EncoderModel", "CLIPTokenizer", "CLIPTextModel"):
        setattr(mod, name, type(name, (Unavailable,), {}))
    return mod


def _stub_xformers() -> types.ModuleType:
    # ToonCrafter's decoder attention; memory_efficient_attention on [B, M, K] is softmax(q k^T / sqrt(K)) v.
    mod, ops = types.ModuleType("xformers"), types.ModuleType("xformers.ops")
    mod.__version__ = "0.0.0+dcrt.stub"
    ops.memory_efficient_attention = lambda q, k, v, attn_bias=None, op=None: F.scaled_dot_product_attention(q, k, v)
    mod.ops = ops
    return mod


@contextlib.contextmanager
def _xformers_while_importing():
    """xformers (the stub where it is absent) importable inside the block only."""
    if importlib.util.find_spec("xformers") is not None:
        yield
        return
    stub = _stub_xformers()
    sys.modules["xformers"], sys.modules["xformers.ops"] = stub, stub.ops
    try:
        yield
    finally:
        del sys.modules["xformers"], sys.modules["xformers.ops"]


_STUBS = {"pytorch_lightning": _stub_pytorch_lightning, "cv2": _stub_cv2, "transformers": _stub_transformers}
# Top-level names of the original checkout; `utils` is generic enough to collide with other packages.
_REF_PACKAGES = ("lvdm", "utils")


def import_reference(repo: Path) -> SimpleNamespace:
    """Import the five original classes from `repo`; stubs stand in for absent heavy dependencies."""
    repo = Path(repo).resolve()
    for name, make in _STUBS.items():
        if name not in sys.modules and importlib.util.find_spec(name) is None:
            sys.modules[name] = make()
    # Put the checkout first on the path and evict same-named modules that come from elsewhere.
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    for name in list(sys.modules):
        if name.split(".")[0] in _REF_PACKAGES:
            mod = sys.modules[name]
            # The checkout has no __init__.py files: its packages are namespace packages (no __file__).
            origin = getattr(mod, "__file__", None) or next(iter(getattr(mod, "__path__", [])), None)
            if origin is None or not Path(origin).resolve().is_relative_to(repo):
                del sys.modules[name]

    def load(module: str, attr: str):
        return getattr(importlib.import_module(module), attr)

    ref = SimpleNamespace(
        repo=repo,
        UNetModel=load("lvdm.modules.networks.openaimodel3d", "UNetModel"),
        FrozenOpenCLIPEmbedder=load("lvdm.modules.encoders.condition", "FrozenOpenCLIPEmbedder"),
        FrozenOpenCLIPImageEmbedderV2=load("lvdm.modules.encoders.condition", "FrozenOpenCLIPImageEmbedderV2"),
        Resampler=load("lvdm.modules.encoders.resampler", "Resampler"),
    )
    with _xformers_while_importing() if (repo / _DUAL_REF_MODULE).is_file() else contextlib.nullcontext():
        autoencoder = importlib.import_module("lvdm.models.autoencoder")
    ref.AutoencoderKL = autoencoder.AutoencoderKL
    ref.AutoencoderKL_Dualref = getattr(autoencoder, "AutoencoderKL_Dualref", None)  # ToonCrafter only
    return ref


def _ensure_extra_stubs() -> None:
    """Stubs beyond _STUBS that ddpm3d.py and inference.py import (only when the package is absent)."""
    pl = sys.modules.get("pytorch_lightning")
    if pl is not None and getattr(pl, "__file__", None) is None:  # the stub above, not the real package
        if not hasattr(pl, "seed_everything"):
            pl.seed_everything = lambda seed=None, *a, **k: seed
        if "pytorch_lightning.utilities" not in sys.modules:
            util = types.ModuleType("pytorch_lightning.utilities")
            util.rank_zero_only = lambda fn: fn
            pl.utilities = util
            sys.modules["pytorch_lightning.utilities"] = util
    if "omegaconf" not in sys.modules and importlib.util.find_spec("omegaconf") is None:
        mod = types.ModuleType("omegaconf")
        mod.OmegaConf = type("OmegaConf", (Unavailable,), {})
        sys.modules["omegaconf"] = mod


def import_reference_sampling(repo: Path | None = None) -> types.SimpleNamespace:
    """The original LatentVisualDiffusion class, both DDIM sampler modules and inference.py (as a module)."""
    ref = import_reference(repo or reference_repo())
    _ensure_extra_stubs()
    ref.ddpm3d = importlib.import_module("lvdm.models.ddpm3d")
    ref.ddim = importlib.import_module("lvdm.models.samplers.ddim")
    ref.ddim_multicond = importlib.import_module("lvdm.models.samplers.ddim_multiplecond")
    name = "dcrt_reference_inference"
    if name not in sys.modules or not Path(sys.modules[name].__file__).is_relative_to(ref.repo):
        path = ref.repo / "scripts" / "evaluation" / "inference.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        saved_path = list(sys.path)  # the script inserts `sys.path[0]/../..`; undo that
        try:
            spec.loader.exec_module(module)
        finally:
            sys.path[:] = saved_path
        sys.modules[name] = module
    ref.inference = sys.modules[name]
    return ref


# ------------------------------------------------------------------------------------------------
# Patches applied while building the original modules


@contextlib.contextmanager
def quiet_logging():
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


@contextlib.contextmanager
def skip_init():
    """Make torch.nn.init fills no-ops while building: the strict load overwrites every tensor anyway."""
    names = [n for n in dir(torch.nn.init) if n.endswith("_") and not n.startswith("_")]
    saved = {n: getattr(torch.nn.init, n) for n in names}
    try:
        for n in names:
            setattr(torch.nn.init, n, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for n, fn in saved.items():
            setattr(torch.nn.init, n, fn)


def open_clip_arch(preset) -> str:
    """Register the preset's CLIP towers as an open_clip architecture (equals ViT-H-14 for real models)."""
    import open_clip.factory

    text, image = preset.text, preset.image
    if text.projection_dim != image.projection_dim:
        raise ValueError("open_clip needs one embed_dim for both towers")
    cfg = {
        "embed_dim": text.projection_dim,
        "vision_cfg": {
            "image_size": image.image_size,
            "patch_size": image.patch_size,
            "width": image.width,
            "layers": image.layers,
            "head_width": image.width // image.heads,
            "mlp_ratio": image.mlp_ratio,
        },
        "text_cfg": {
            "context_length": text.context_length,
            "vocab_size": text.vocab_size,
            "width": text.width,
            "heads": text.heads,
            "layers": text.layers,
            "mlp_ratio": text.mlp_ratio,
        },
    }
    name = f"dcrt-parity-{preset.name}"
    open_clip.factory._MODEL_CONFIGS[name] = cfg
    return name


def restore_sequence_first(transformer: nn.Module) -> None:
    """The original code permutes to (L, N, D) before calling open_clip blocks (open_clip 2.22 layout).
    open_clip 3.x creates `nn.MultiheadAttention(batch_first=True)`, which would read L as the batch and
    silently attend across the batch instead of the sequence. Flip every block back to sequence-first;
    the `Transformer` container itself stays batch-first so it adds no transposes of its own."""
    for block in transformer.resblocks:
        block.attn.batch_first = False


def patch_visual_tower(visual: nn.Module) -> None:
    """The open_clip image tower as the original's V2 embedder needs it: sequence-first blocks, and
    `input_patchnorm`, an attribute the embedder reads and open_clip removed (it was False for ViT-H)."""
    restore_sequence_first(visual.transformer)
    if not hasattr(visual, "input_patchnorm"):
        visual.input_patchnorm = False
