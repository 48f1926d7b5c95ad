"""Text context through `transformers`, as Wan does it (shared/DESIGN.md): tokenize to at most 512 tokens, run the
encoder with its attention mask, keep the real tokens and zero-pad the hidden states to 512."""

from __future__ import annotations

import html
import re
from pathlib import Path

import torch

MAX_TOKENS = 512


def clean_prompt(text: str) -> str:
    """Undo HTML escapes (twice, as Wan does), fix mojibake when `ftfy` is installed, collapse whitespace."""
    try:
        import ftfy  # optional: Wan applies it, its absence only matters for broken unicode
        text = ftfy.fix_text(text)
    except ImportError:
        pass
    text = html.unescape(html.unescape(text))
    return re.sub(r"\s+", " ", text).strip()


class TextEncoder:
    """A transformers encoder model + its tokenizer → context (B, max_tokens, D), zero beyond each prompt's tokens."""

    def __init__(self, model: torch.nn.Module, tokenizer, max_tokens: int = MAX_TOKENS):
        self.model = model
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, tokenizer_dir: str | Path | None = None, *,
                        dtype: torch.dtype | None = None, device: str | torch.device | None = None,
                        max_tokens: int = MAX_TOKENS) -> "TextEncoder":
        """Load an encoder folder (e.g. UMT5EncoderModel) and its tokenizer folder (default: the same folder)."""
        from transformers import AutoModelForTextEncoding, AutoTokenizer

        model = AutoModelForTextEncoding.from_pretrained(str(model_dir), dtype=dtype or torch.float32)
        model = model.eval().requires_grad_(False)
        if device is not None:
            model = model.to(device)
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir or model_dir))
        return cls(model, tokenizer, max_tokens)

    def save_pretrained(self, model_dir: str | Path, tokenizer_dir: str | Path) -> None:
        self.model.save_pretrained(str(model_dir))
        self.tokenizer.save_pretrained(str(tokenizer_dir))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def to(self, device=None, dtype=None) -> "TextEncoder":
        self.model.to(device=device, dtype=dtype)
        return self

    @torch.no_grad()
    def __call__(self, prompts: str | list[str]) -> torch.Tensor:
        """prompts (B strings) → hidden states (B, max_tokens, D) in the model's dtype, zero past each prompt."""
        if isinstance(prompts, str):
            prompts = [prompts]
        if not all(isinstance(p, str) for p in prompts):
            raise TypeError(f"prompts must be strings, got {[type(p).__name__ for p in prompts]}")
        tokens = self.tokenizer([clean_prompt(p) for p in prompts], padding="max_length", max_length=self.max_tokens,
                                truncation=True, add_special_tokens=True, return_attention_mask=True,
                                padding_side="right", return_tensors="pt")
        ids, mask = tokens.input_ids.to(self.device), tokens.attention_mask.to(self.device)
        hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, L, D)
        # Real tokens kept, padding positions zeroed: the DiT's cross-attention sees exact zeros there.
        return hidden * mask[:, :, None].to(hidden.dtype)


def read_prompts(path: str | Path) -> list[str]:
    """One prompt per line of a text file; blank lines and lines starting with '#' are skipped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompts file {str(path)!r} does not exist")
    lines = path.read_text(encoding="utf-8").splitlines()
    prompts = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise ValueError(f"prompts file {str(path)!r} has no prompts; expected one prompt per line")
    return prompts
