"""The checkpoint's complete OpenCLIP ViT-H/14 in its joint image-text space: what zero-shot image-text scoring
(describe) and frame similarity (score) measure with.

DynamiCrafter conditions on the text tower's penultimate block without projection and on the image tower's tokens
before `ln_post` (dcrt.models.clip), but every released checkpoint carries the rest of CLIP: the text tower's last
block, `text_projection`, `logit_scale`, and the visual `ln_post` and `proj` (declared unused by
dcrt.families.dynamicrafter.checkpoint). Here the same reference modules are completed with those tensors: the text
tower runs all its blocks and pools the end-of-text token (open_clip's `encode_text`), the image tower is
`ImageEmbedder` (open_clip's `encode_image`). Only these tensors are read from a checkpoint; the UNet and VAE are
never touched, so a full-size describe needs ~4 GB (fp32) instead of the whole model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import nn

from dcrt.config import ImageEncoderConfig, TextEncoderConfig
from dcrt.errors import UsageError
from dcrt.families.base import PresetBase
from dcrt.families.state_dicts import check_layout, random_tensor, read_state_dict
from dcrt.models.clip import ImageEmbedder, ResidualAttentionBlock, TextEncoder
from dcrt.models.layers import LayerNorm
from dcrt.models.tokenizer import Tokenizer
from dcrt.weights import RANDOM_SEED, Weights

# Where each tower's tensors sit in an original DynamiCrafter checkpoint (its text tower is the conditioning
# model's; the image embedder's copy of CLIP lost its text transformer: docs/models.md §2.3).
TEXT_PREFIX = "cond_stage_model.model."
IMAGE_PREFIX = "embedder.model."
# Frames and prompts per forward pass: bounds the full-size towers' activations (at 16 frames the largest, one block's
# attention scores, are 16 x 16 heads x 257^2 floats: 68 MB).
_CHUNK = 16


class Embedder(Protocol):
    """Images and texts in one space where cosine similarity is the match (L2-normalised float32 rows)."""

    logit_scale: float  # the trained temperature: softmax(logit_scale * cosines) are CLIP's zero-shot probabilities

    def embed_images(self, frames: np.ndarray) -> np.ndarray:
        """uint8 [N, H, W, 3] -> float32 [N, D]."""
        ...

    def embed_texts(self, prompts: list[str]) -> np.ndarray:
        """N prompts -> float32 [N, D]."""
        ...


class TextMemo:
    """An `Embedder` that embeds each distinct text once (a bank ranked for many images, a prompt scored against
    many videos). The first call's batch is the inner embedder's, so its rows are the same numbers."""

    def __init__(self, inner: Embedder):
        self.inner = inner
        self.logit_scale = inner.logit_scale
        self._rows: dict[str, np.ndarray] = {}

    def embed_images(self, frames: np.ndarray) -> np.ndarray:
        return self.inner.embed_images(frames)

    def embed_texts(self, prompts: list[str]) -> np.ndarray:
        missing = [p for p in dict.fromkeys(prompts) if p not in self._rows]
        if missing:
            self._rows.update(zip(missing, self.inner.embed_texts(missing)))
        return np.stack([self._rows[p] for p in prompts])


class ProjectedTextEncoder(TextEncoder):
    """The text tower with what DynamiCrafter leaves unused: its last block, the end-of-text pooling and the
    projection `text_projection`. Tokens [N, 77] -> [N, projection_dim]."""

    def __init__(self, cfg: TextEncoderConfig):
        super().__init__(cfg)
        self.transformer.resblocks.append(ResidualAttentionBlock(cfg.width, cfg.heads, cfg.mlp_ratio))
        self.text_projection = nn.Parameter(torch.empty(cfg.width, cfg.projection_dim))
        self.logit_scale = nn.Parameter(torch.empty(()))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        eot = tokens.argmax(dim=-1)  # end-of-text has the highest token id (open_clip's "argmax" pooling)
        # The mask is causal, so positions after the last end-of-text token change no pooled output: run only up to
        # it (a short prompt costs ~1/6 of the 77 positions).
        n = int(eot.max()) + 1
        causal = torch.full((n, n), float("-inf"), device=tokens.device).triu(1)
        x = self.token_embedding(tokens[:, :n]) + self.positional_embedding[:n]
        x = self.ln_final(self.transformer(x, causal.to(x.dtype)))  # [N, n, width]
        return x[torch.arange(x.shape[0], device=x.device), eot] @ self.text_projection


class JointClip(nn.Module):
    """Both towers and the temperature. `original_keys` maps each tensor to its name in a DynamiCrafter checkpoint."""

    def __init__(self, text: TextEncoderConfig, image: ImageEncoderConfig):
        super().__init__()
        if text.projection_dim != image.projection_dim:
            raise UsageError(f"text and image projections differ ({text.projection_dim} vs {image.projection_dim})")
        self.text = ProjectedTextEncoder(text)
        self.image = ImageEmbedder(image)

    def original_keys(self) -> dict[str, tuple[str, str]]:
        """Checkpoint key -> (tower, key inside the tower)."""
        keys = {TEXT_PREFIX + k: ("text", k) for k in self.text.state_dict()}
        return keys | {IMAGE_PREFIX + k: ("image", k) for k in self.image.state_dict()}

    def original_shapes(self) -> dict[str, tuple[int, ...]]:
        """Checkpoint key -> shape: what a checkpoint must hold for describe and score."""
        towers = {"text": self.text.state_dict(), "image": self.image.state_dict()}
        return {original: tuple(towers[tower][key].shape) for original, (tower, key) in self.original_keys().items()}

    def norm_weights(self) -> set[str]:
        """Checkpoint keys of the LayerNorm weights (random weights draw them near 1, as random_model does)."""
        found = set()
        for tower, prefix in (("text", TEXT_PREFIX), ("image", IMAGE_PREFIX)):
            for name, module in getattr(self, tower).named_modules():
                if isinstance(module, LayerNorm):
                    found.add(f"{prefix}{name}.weight")
        return found

    def load_original(self, state: dict[str, torch.Tensor]) -> None:
        """Assign the towers' tensors from an original state dict (other keys are ignored)."""
        towers: dict[str, dict[str, torch.Tensor]] = {"text": {}, "image": {}}
        for original, (tower, key) in self.original_keys().items():
            towers[tower][key] = state[original]
        for tower, tensors in towers.items():
            getattr(self, tower).load_state_dict(tensors, strict=True, assign=True)


@dataclass
class ClipSpace:
    """`Embedder` over a `JointClip` on one device and dtype."""

    model: JointClip
    device: torch.device
    dtype: torch.dtype

    def __post_init__(self) -> None:
        self.tokenizer = Tokenizer(self.model.text.cfg.context_length)

    @property
    def logit_scale(self) -> float:
        return float(self.model.text.logit_scale.exp())

    @torch.inference_mode()
    def embed_images(self, frames: np.ndarray) -> np.ndarray:
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise UsageError(f"images must be uint8 [N, H, W, 3], got {frames.dtype} {list(frames.shape)}")
        rows = []
        for start in range(0, len(frames), _CHUNK):
            # a copy: frames may be a read-only view (a decoded video), which torch.from_numpy warns about
            pixels = torch.from_numpy(np.array(frames[start : start + _CHUNK])).to(self.device)
            image = pixels.permute(0, 3, 1, 2).float() / 127.5 - 1.0  # [n, 3, H, W] in [-1, 1], as DynamiCrafter's
            rows.append(self.model.image(image).float())
        return _normalised(rows)

    @torch.inference_mode()
    def embed_texts(self, prompts: list[str]) -> np.ndarray:
        rows = []
        for start in range(0, len(prompts), _CHUNK):
            tokens = self.tokenizer(list(prompts[start : start + _CHUNK])).to(self.device)
            rows.append(self.model.text(tokens).float())
        return _normalised(rows)


def _normalised(rows: list[torch.Tensor]) -> np.ndarray:
    x = torch.cat(rows)
    return torch.nn.functional.normalize(x, dim=-1).cpu().numpy().astype(np.float32)


def load_clip_space(
    preset: PresetBase, weights: Weights, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> ClipSpace:
    """The joint space of `preset`'s CLIP (a DynamiCrafter-family preset: SVD checkpoints hold no text tower) with
    `weights`: a checkpoint's CLIP tensors, or (checkpoint None) the seeded random tensors `random_model` draws for
    the same keys, so a random-weights run describes with the CLIP its model conditions on."""
    preset.require_family("dynamicrafter", "describe and score (their CLIP text tower)")
    with torch.device("meta"):
        model = JointClip(preset.text, preset.image)
    expected = model.original_shapes()
    if weights.checkpoint is None:
        norms, g = model.norm_weights(), torch.Generator()
        state = {k: random_tensor(k, shape, RANDOM_SEED, k in norms, g) for k, shape in expected.items()}
    else:
        state = read_state_dict(weights.checkpoint)
        check_layout({k: tuple(v.shape) for k, v in state.items() if k in expected}, expected, preset.name)
    model.load_original(state)
    return ClipSpace(model.to(device=device, dtype=dtype).eval().requires_grad_(False), torch.device(device), dtype)
