"""What one DiT forward costs per rank under sequence parallelism, from the code's own shapes.

Everything is counted from a `DiTConfig` (parameters by building the model on the meta device, so the count is the
code's, not a formula's) and the latent shape the VAE makes for a clip. Sizes are bytes at `bytes_per_value` (bf16: 2).
Per rank P:
    tokens n = ⌈S/P⌉ (the shard), S = F·(h/ph)·(w/pw)
    weights: replicated under sequence parallelism; params/P under FSDP; training with AdamW and fp32 master weights
        holds 16 bytes per parameter (bf16 weight + fp32 master, gradient, two moments — all sharded by FSDP)
    attention per block: q, k, v for H/P heads over all S tokens after the all-to-all (Ulysses), the K/V part of it, and
        the score matrix S²·H/P that a kernel without tiling (SDPA math) would materialise — flash attention never does
    residual stream n·D and FFN hidden n·ffn_dim per block; the block inputs kept for backward with checkpointing L·n·D
    compute per forward: 2·params·n for the matmuls plus 4·n·(S + L_text)·D per block for attention
    communication per forward: Ulysses moves 4 tensors of n·D (q, k, v there, the output back) per block, of which
        (P−1)/P leaves the rank; gathered K/V moves 2·(P−1)·n·D; plus the final gather of the output patches
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class RankCost:
    ranks: int
    tokens: int
    tokens_per_rank: int
    params: int
    weights_replicated: float
    weights_fsdp: float
    train_state_fsdp: float
    qkv_per_block: float
    kv_per_block: float
    scores_per_block: float
    residual_per_block: float
    ffn_hidden_per_block: float
    checkpointed_inputs: float
    ulysses_sent_per_forward: float
    gather_kv_sent_per_forward: float
    ulysses_possible: bool
    flops_per_rank: float


def count_params(config) -> int:
    """Parameters of `DiT(config)`, built on the meta device (no memory)."""
    from vidgen.dit.model import DiT

    with torch.device("meta"):
        return sum(p.numel() for p in DiT(config).parameters())


def latent_grid(frames: int, height: int, width: int, temporal: int = 4, spatial: int = 8) -> tuple[int, int, int]:
    """Latent (F, h, w) of a clip of `frames` = 1 + temporal·k pixel frames at height × width."""
    if (frames - 1) % temporal or height % spatial or width % spatial:
        raise ValueError(f"a clip of {frames} frames at {height}x{width} does not map onto the VAE's latent grid "
                         f"(frames = 1 + {temporal}k, sizes multiples of {spatial})")
    return 1 + (frames - 1) // temporal, height // spatial, width // spatial


def rank_costs(config, grid: tuple[int, int, int], ranks: int, bytes_per_value: int = 2,
               params: int | None = None, image_len: int = 0) -> RankCost:
    """Per-rank sizes (bytes) and traffic (bytes sent by one rank) of one forward over latent `grid` on `ranks`;
    `image_len`: image tokens each block's cross-attention also attends to (Wan 2.1 I2V: 257 CLIP tokens)."""
    pt, ph, pw = config.patch_size
    f, h, w = grid
    s = (f // pt) * (h // ph) * (w // pw)
    n = math.ceil(s / ranks)
    d, heads, layers, b = config.dim, config.num_heads, config.num_layers, bytes_per_value
    params = count_params(config) if params is None else params
    leave = (ranks - 1) / ranks
    patch_out = config.out_dim * pt * ph * pw
    final_gather = (ranks - 1) * n * patch_out * 4  # the head's output is gathered in fp32 by the sampler's caller
    return RankCost(
        ranks=ranks, tokens=s, tokens_per_rank=n, params=params,
        weights_replicated=params * b, weights_fsdp=params * b / ranks, train_state_fsdp=params * 16 / ranks,
        qkv_per_block=3 * s * d / ranks * b, kv_per_block=2 * s * d / ranks * b,
        scores_per_block=s * s * heads / ranks * b,
        residual_per_block=n * d * b, ffn_hidden_per_block=n * config.ffn_dim * b,
        checkpointed_inputs=layers * n * d * b,
        ulysses_sent_per_forward=layers * 4 * n * d * b * leave + final_gather,
        gather_kv_sent_per_forward=layers * 2 * (ranks - 1) * n * d * b + final_gather,
        ulysses_possible=heads % ranks == 0,
        # matmuls: 2 FLOPs per weight per token; attention: q·kᵀ and p·v, 2·S·D each per query; cross-attention to
        # the text (and image) tokens
        flops_per_rank=2 * params * n + layers * 4 * n * (s + config.text_len + image_len) * d,
    )  # fmt: skip


def _gib(x: float) -> str:
    return f"{x / 2**30:.2f}" if x < 2**30 * 100 else f"{x / 2**30:.0f}"


def markdown_table(costs: list[RankCost]) -> str:
    """One row per rank count, sizes in GiB."""
    head = ("| GPUs | tokens / rank | weights (SP, replicated) | weights (FSDP) | train state (FSDP, AdamW) | "
            "q,k,v / block | K/V / block | scores if materialised / block | FFN hidden / block | "
            "block inputs kept (L·n·D) | sent / forward, Ulysses | sent / forward, gathered K/V | TFLOP / forward |")
    rule = "|" + "---|" * 13
    rows = [head, rule]
    for c in costs:
        rows.append(
            f"| {c.ranks} | {c.tokens_per_rank:,} | {_gib(c.weights_replicated)} | {_gib(c.weights_fsdp)} | "
            f"{_gib(c.train_state_fsdp)} | {_gib(c.qkv_per_block)} | {_gib(c.kv_per_block)} | "
            f"{_gib(c.scores_per_block)} | {_gib(c.ffn_hidden_per_block)} | {_gib(c.checkpointed_inputs)} | "
            f"{_gib(c.ulysses_sent_per_forward) if c.ulysses_possible else 'n/a'} | "
            f"{_gib(c.gather_kv_sent_per_forward)} | {c.flops_per_rank / 1e12:,.0f} |"
        )
    return "\n".join(rows)
