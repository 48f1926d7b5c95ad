"""Zero-padded text rows, computed once: an exact shortcut for the DiT's text context.

Wan pipelines (ours, diffusers' `WanPipeline`, Wan's own code) hand the DiT text hidden states of a fixed length L
(512 for Wan) whose rows past the prompt are exact zeros. The text embedding maps every zero row to one and the same
vector, so in every block those rows give identical cross-attention keys and values, and softmax over m identical keys
equals softmax over one of them with its logit raised by log m. So the DiT keeps the rows up to the longest prompt of
the batch plus one zero row, and tells attention that this last key stands for the L − n it replaces
(`vidgen_kernels.attention`'s `key_repeats`). Shorter prompts' zero rows below n are also copies of that key, counted
one by one: still exact. The text embedding and every block's K/V projection then run on n + 1 rows instead of L.

A row counts as padding only if it is exactly zero in every sample, so any other input is left as given.
"""

from __future__ import annotations

import torch


def real_rows(context: torch.Tensor) -> int:
    """Rows up to the last one that is non-zero in some sample: context `(B, L, C)` or `(L, C)` -> n in [0, L]."""
    used = context.ne(0).any(dim=-1)  # (B, L) or (L,)
    if used.ndim == 2:
        used = used.any(dim=0)  # (L,)
    positions = torch.arange(1, used.shape[0] + 1, device=context.device)  # (L,): row i counts as i + 1
    return int((positions * used).max()) if used.numel() else 0  # one host sync


def compact_text(context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Text context `(B, L, C)` (or one sample's `(L, C)`) -> its first n + 1 rows `(B, n+1, C)` and the key counts
    `(n+1,)` int64 (1, …, 1, L − n) for attention; unchanged with counts None when no trailing zero rows can go
    (n + 1 ≥ L)."""
    length = context.shape[-2]
    n = real_rows(context)
    if n + 1 >= length:
        return context, None
    repeats = torch.ones(n + 1, dtype=torch.long, device=context.device)
    repeats[n] = length - n  # the kept zero row stands for rows n .. L−1
    return context[..., : n + 1, :], repeats


def compact_texts(contexts: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """Packed samples' contexts, each `(L_i, C)` -> compacted `(n_i + 1 or L_i, C)` and the counts of all kept rows
    concatenated `(Σ rows,)`, or None when no sample lost a row."""
    kept, counts = [], []
    for ctx in contexts:
        ctx, repeats = compact_text(ctx)
        kept.append(ctx)
        counts.append(torch.ones(ctx.shape[0], dtype=torch.long, device=ctx.device) if repeats is None else repeats)
    if all(len(c) == len(full) for c, full in zip(kept, contexts)):
        return kept, None
    return kept, torch.cat(counts)
