"""Fully sharded training of the DiT with torch FSDP2 (`fully_shard`), the way accelerate's FSDP2 plugin wraps it.

Each `DiTBlock` is one FSDP unit (its parameters are gathered just before the block runs and freed after), and the root
holds the embeddings and the head. `configs/accelerate/fsdp-*.yaml` ask accelerate for the same wrapping
(`fsdp_transformer_layer_cls_to_wrap: DiTBlock`); this function is for scripts and tests that use torch directly.
"""

from __future__ import annotations

import torch


def shard_dit(dit, mesh=None, reshard_after_forward: bool = True, mp_policy=None):
    """Shard `dit` in place over `mesh` (None: the default process group), one unit per block plus the root; returns
    it. mp_policy: a `torch.distributed.fsdp.MixedPrecisionPolicy` (e.g. bf16 parameters, fp32 gradient reduction)."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    kwargs = {"mesh": mesh, "reshard_after_forward": reshard_after_forward,
              "mp_policy": mp_policy or MixedPrecisionPolicy()}
    for block in dit.blocks:
        fully_shard(block, **kwargs)
    fully_shard(dit, **kwargs)
    return dit


def full_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The unsharded state dict (collective: every rank must call it); plain tensors pass through."""
    return {k: (v.full_tensor() if hasattr(v, "full_tensor") else v) for k, v in module.state_dict().items()}
