"""Captions → text context (B, text_len, D) as a module that can be frozen or trained jointly with the DiT.

The same computation as `vidgen.text.TextEncoder` (Wan's: tokenise to at most `text_len` tokens, encode with the
attention mask, keep the real tokens, zero the rest), but an `nn.Module` with gradients, so accelerate can wrap it and
a small toy encoder can learn. Frozen use runs it under `torch.no_grad()`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from vidgen.text import TextEncoder, tokenize


class TextConditioner(nn.Module):
    def __init__(self, tokenizer, encoder: nn.Module, text_len: int):
        super().__init__()
        self.tokenizer, self.encoder, self.text_len = tokenizer, encoder, text_len

    @classmethod
    def from_folder(cls, folder: str | Path, text_len: int) -> "TextConditioner":
        """An encoder (e.g. UMT5EncoderModel) and its tokenizer: one transformers folder holding both, or a folder
        with `text_encoder/` and `tokenizer/` subfolders (Wan's layout)."""
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"text encoder folder not found: {folder}")
        model_dir, tok_dir = folder, folder
        if (folder / "text_encoder").is_dir() and (folder / "tokenizer").is_dir():
            model_dir, tok_dir = folder / "text_encoder", folder / "tokenizer"
        te = TextEncoder.from_pretrained(model_dir, tok_dir, max_tokens=text_len)
        return cls(te.tokenizer, te.model, text_len)

    @property
    def dim(self) -> int:
        c = self.encoder.config
        return getattr(c, "d_model", None) or c.hidden_size

    def forward(self, captions: list[str]) -> torch.Tensor:
        """(B,) captions → (B, text_len, D) float32, zero beyond each caption's real tokens."""
        ids, mask = tokenize(self.tokenizer, captions, self.text_len, next(self.encoder.parameters()).device)
        hidden = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, text_len, D)
        return hidden.float() * mask[:, :, None].float()

    def save_pretrained(self, folder: str | Path) -> None:
        """Wan's layout: `folder/text_encoder/` and `folder/tokenizer/`, loadable by `vidgen.text.TextEncoder`."""
        self.encoder.save_pretrained(str(Path(folder) / "text_encoder"))
        self.tokenizer.save_pretrained(str(Path(folder) / "tokenizer"))
