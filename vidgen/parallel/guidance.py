"""Guidance parallelism: the conditional and unconditional branches of classifier-free guidance on two ranks."""

from __future__ import annotations

import torch
import torch.distributed as dist

from vidgen.parallel.context import ParallelContext
from vidgen.samplers import ModelFn, cfg


def cfg_parallel(model_cond: ModelFn, model_uncond: ModelFn, scale: float, parallel: ParallelContext) -> ModelFn:
    """`samplers.cfg` with cfg rank 0 running the conditional branch and cfg rank 1 the unconditional one; one
    all-gather per step swaps the velocities and both ranks combine them the same way (so they stay identical).
    scale ≤ 1 runs the conditional branch only, on both ranks."""
    if parallel.cfg_size == 1 or scale <= 1:
        return cfg(model_cond, model_uncond, scale)
    if parallel.cfg_size != 2:
        raise ValueError(f"guidance parallelism splits two branches, got a guidance group of {parallel.cfg_size}")
    mine = model_cond if parallel.cfg_rank == 0 else model_uncond

    def guided(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        v = mine(x, sigma).contiguous()  # (B, C, F, h, w)
        both = [torch.empty_like(v), torch.empty_like(v)]
        dist.all_gather(both, v, group=parallel.cfg_group)
        v_cond, v_uncond = both
        return v_uncond + scale * (v_cond - v_uncond)

    return guided
