"""The parallel context: which ranks this process shares work with, built once and passed explicitly.

Ranks are laid out as (data, guidance, sequence) with the sequence axis fastest, so the ranks of one sequence-parallel
group are neighbours (on one node they share the fastest links, which its all-to-alls need most):

    rank = (dp_rank · cfg_size + cfg_rank) · sp_size + sp_rank
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist


def init_distributed(backend: str | None = None) -> bool:
    """Join the process group that `torchrun` describes in the environment; False (and nothing done) when not
    launched by torchrun. Backend: NCCL with CUDA, else gloo."""
    if "WORLD_SIZE" not in os.environ:
        return False
    if not dist.is_initialized():
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend)
    return True


@dataclass(frozen=True)
class ParallelContext:
    """How the world is cut: `sp` ranks share one sequence, `cfg` ranks split the guidance branches, `dp` groups
    work on different samples. Groups are None when their size is 1. `sp_attention` picks the sequence-parallel
    attention: "ulysses", "gather_kv", or "auto" (Ulysses when the heads divide sp_size). `sample_group` holds the
    sp · cfg ranks that share one sample; `vae_tiling` (a `causal_vae.tiling.Tiling`), when set, splits the VAE decode
    over them by tiles (None: each of them decodes whole frames, exactly as one process does)."""

    rank: int = 0
    world_size: int = 1
    sp_rank: int = 0
    sp_size: int = 1
    cfg_rank: int = 0
    cfg_size: int = 1
    dp_rank: int = 0
    dp_size: int = 1
    sp_group: object = field(default=None, compare=False, repr=False)
    cfg_group: object = field(default=None, compare=False, repr=False)
    sample_group: object = field(default=None, compare=False, repr=False)
    sp_attention: str = "auto"
    vae_tiling: object = None

    @property
    def sample_rank(self) -> int:
        return self.cfg_rank * self.sp_size + self.sp_rank

    @property
    def sample_size(self) -> int:
        return self.cfg_size * self.sp_size

    @classmethod
    def single(cls) -> "ParallelContext":
        """One process doing everything."""
        return cls()

    @classmethod
    def from_world(cls, sp_size: int = 1, cfg_size: int = 1, sp_attention: str = "auto",
                   vae_tiling=None) -> "ParallelContext":
        """Cut the initialised default process group; every rank must call this with the same arguments (it creates
        the subgroups collectively). The data-parallel size is what remains: world / (sp · cfg)."""
        if not dist.is_initialized():
            if sp_size == cfg_size == 1:
                return cls(sp_attention=sp_attention, vae_tiling=vae_tiling)
            raise RuntimeError(
                f"ParallelContext.from_world(sp_size={sp_size}, cfg_size={cfg_size}) needs torch.distributed; launch "
                "with torchrun and call vidgen.parallel.init_distributed() first"
            )
        world, rank = dist.get_world_size(), dist.get_rank()
        if sp_size < 1 or cfg_size < 1 or cfg_size > 2 or world % (sp_size * cfg_size):
            raise ValueError(
                f"cannot cut {world} ranks into sequence groups of {sp_size} × guidance groups of {cfg_size}: expected "
                "sp_size ≥ 1, cfg_size in (1, 2) and sp_size · cfg_size dividing the world size"
            )
        dp_size = world // (sp_size * cfg_size)
        sp_rank, cfg_rank, dp_rank = rank % sp_size, (rank // sp_size) % cfg_size, rank // (sp_size * cfg_size)
        sp_group = cfg_group = sample_group = None
        # new_group is collective: every rank creates every group, in the same order, and keeps its own.
        for d in range(dp_size):
            ranks = list(range(d * cfg_size * sp_size, (d + 1) * cfg_size * sp_size))
            group = dist.new_group(ranks) if len(ranks) > 1 else None
            if rank in ranks:
                sample_group = group
            for c in range(cfg_size):
                ranks = [(d * cfg_size + c) * sp_size + s for s in range(sp_size)]
                group = dist.new_group(ranks) if sp_size > 1 else None
                if rank in ranks:
                    sp_group = group
            for s in range(sp_size):
                ranks = [(d * cfg_size + c) * sp_size + s for c in range(cfg_size)]
                group = dist.new_group(ranks) if cfg_size > 1 else None
                if rank in ranks:
                    cfg_group = group
        return cls(rank, world, sp_rank, sp_size, cfg_rank, cfg_size, dp_rank, dp_size, sp_group, cfg_group,
                   sample_group, sp_attention, vae_tiling)

    @property
    def is_main(self) -> bool:
        return self.rank == 0
