"""Text context through `transformers`, as Wan does it: tokenize to at most 512 tokens, run the
encoder with its attention mask, keep the real tokens and zero-pad the hidden states to 512."""

from __future__ import annotations

import html
import re
import warnings
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
        """Load an encoder folder (e.g. UMT5EncoderModel) and its tokenizer folder (default: the same folder).

        A file that does not read, or weights the encoder lacks or cannot take, raise one WeightsError naming the file:
        an encoder is never returned with weights initialised at random.
        """
        from vidgen.text_files import load_encoder, load_tokenizer

        model = load_encoder(Path(model_dir), dtype or torch.float32)
        model = model.eval().requires_grad_(False)
        if device is not None:
            model = model.to(device)
        tokenizer = load_tokenizer(Path(tokenizer_dir or model_dir))
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
        warn_about_prompts(self.tokenizer, [clean_prompt(p) for p in prompts], self.max_tokens)
        ids, mask = tokenize(self.tokenizer, prompts, self.max_tokens, self.device)
        hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, L, D)
        # Real tokens kept, padding positions zeroed: the DiT's cross-attention sees exact zeros there.
        return hidden * mask[:, :, None].to(hidden)  # on the hidden states' device (offload may move the model)


def tokenize(tokenizer, prompts: list[str], max_tokens: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The one tokenisation of generation and training: cleaned prompts → (input ids, attention mask), each
    (B, max_tokens), padded on the right and truncated to `max_tokens`, with the tokenizer's end token."""
    tokens = tokenizer([clean_prompt(p) for p in prompts], padding="max_length", max_length=max_tokens,
                       truncation=True, add_special_tokens=True, return_attention_mask=True, padding_side="right",
                       return_tensors="pt")
    return tokens.input_ids.to(device), tokens.attention_mask.to(device)


def warn_about_prompts(tokenizer, prompts: list[str], max_tokens: int) -> None:
    """One warning per prompt that is longer than the encoder keeps, and one listing the words the tokenizer maps to
    its unknown token (a closed vocabulary, like the embedded model's, knows only its own words)."""
    fast = getattr(tokenizer, "is_fast", False)
    full = tokenizer(prompts, add_special_tokens=True, truncation=False, return_offsets_mapping=fast, verbose=False)
    unknown: list[str] = []
    for i, (prompt, ids) in enumerate(zip(prompts, full.input_ids)):
        if len(ids) > max_tokens:
            warnings.warn(f"prompt {i + 1} has {len(ids)} tokens; the text encoder keeps the first {max_tokens}, so "
                          f"the rest is dropped: ...{prompt[-40:]!r}", stacklevel=3)
        unk = tokenizer.unk_token_id
        if unk is not None:
            spans = full.offset_mapping[i] if fast else [None] * len(ids)
            for token, span in zip(ids, spans):
                if token == unk:
                    word = prompt[span[0]:span[1]] if span is not None else "?"
                    if word not in unknown:
                        unknown.append(word)
    if unknown:
        words = ", ".join(repr(w) for w in unknown[:20]) + (", ..." if len(unknown) > 20 else "")
        warnings.warn(f"{len(unknown)} word(s) of the prompt are not in the text encoder's vocabulary (the model reads "
                      f"each as its unknown token): {words}", stacklevel=3)


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
