"""CLIP BPE tokenization (open_clip's tokenizer: SOT + ids + EOT, truncated to 77, padded with 0)."""

from __future__ import annotations

from pathlib import Path

import torch


def vocabulary_file() -> Path:
    """The BPE merges this tokenizer reads (open_clip's gzipped bpe_simple_vocab_16e6.txt): what `dcrt build` copies
    into a bundle for the C++ host's tokenizer (cpp_host/src/tokenizer.cpp)."""
    from open_clip.tokenizer import default_bpe

    return Path(default_bpe())


class Tokenizer:
    def __init__(self, context_length: int = 77):
        self.context_length = context_length
        self._bpe = None  # open_clip is imported on first use: it is slow to import

    @property
    def bpe(self):
        if self._bpe is None:
            from open_clip.tokenizer import SimpleTokenizer

            self._bpe = SimpleTokenizer(context_length=self.context_length)
        return self._bpe

    def token_count(self, prompt: str) -> int:
        """Tokens the prompt needs including SOT and EOT; over `context_length` means it gets truncated."""
        return len(self.bpe.encode(prompt)) + 2

    def __call__(self, prompts: list[str]) -> torch.Tensor:
        """-> int64 [N, context_length]."""
        return self.bpe(prompts, context_length=self.context_length).long()
