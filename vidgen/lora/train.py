"""LoRA adapters on a frozen DiT, with peft: inject them, take their weights out, put weights back.

Each target linear `W` (a `vidgen.dit.model.Linear` in every block) becomes `W x + (alpha / rank) · B A x` with
A (rank, in) and B (out, rank); B starts at zero, so the adapted model starts exactly as the base. Everything else is
frozen. Adapter weights are keyed by peft's names, `blocks.{i}.{target}.lora_A.default.weight` (and lora_B); the
trainer's checkpoints hold these and nothing else of the model.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from vidgen.lora.config import LoRAConfig

ADAPTER = "default"  # peft's adapter name; one adapter per model here
_LORA_KEY = re.compile(r"\.lora_[AB]\.")


def block_linears(dit: nn.Module) -> list[str]:
    """Names, relative to a block, of the linear layers of the DiT's first block (every block has the same)."""
    return sorted(n for n, m in dit.blocks[0].named_modules() if isinstance(m, nn.Linear))


def check_targets(dit: nn.Module, targets: tuple[str, ...]) -> None:
    """A clear error for a target that is not a linear of the DiT's blocks."""
    linears = block_linears(dit)
    unknown = [t for t in targets if t not in linears]
    if unknown:
        raise ValueError(f"lora.target_modules {unknown} are not linear layers of the DiT's blocks; expected some of "
                         f"{linears}")


def inject_lora(dit: nn.Module, config: LoRAConfig) -> nn.Module:
    """Add adapters (peft `inject_adapter_in_model`) to `dit` in place and freeze everything but them; returns `dit`.

    Adapter weights are fp32 whatever the base's dtype (a frozen bf16 base keeps fp32 adapters and optimizer state).
    """
    from vidgen.lora.inject import add_lora, lora_targets

    check_targets(dit, config.target_modules)
    modules = lora_targets(dit, config.target_modules)
    add_lora(dit, ADAPTER, {m: config.rank for m in modules}, {m: config.alpha for m in modules}, config.dropout)
    for name, p in dit.named_parameters():
        is_adapter = _LORA_KEY.search(name) is not None
        p.requires_grad_(is_adapter)
        if is_adapter:
            p.data = p.data.float()
    return dit


def has_lora(dit: nn.Module) -> bool:
    return any(_LORA_KEY.search(n) for n, _ in dit.named_parameters())


def adapter_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The adapter entries of a model's state dict (peft names)."""
    return {k: v for k, v in state.items() if _LORA_KEY.search(k)}


def load_adapter_state(dit: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load adapter weights (peft names, as `adapter_state` gives) into an injected `dit`; every adapter weight must
    be given and nothing else."""
    own = adapter_state(dit.state_dict())
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(f"adapter weights do not match the model's adapters: missing {missing[:3]} "
                         f"({len(missing)}), unexpected {unexpected[:3]} ({len(unexpected)})")
    dit.load_state_dict(state, strict=False)


def adapter_deltas(dit: nn.Module, scale: float = 1.0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per adapted linear (our name, e.g. `blocks.0.self_attn.qkv`): (A (rank, in), B (out, rank) · scale·alpha/rank),
    so that the linear computes `W x + B A x`: the adapter with its scaling folded into B."""
    from peft.tuners.lora import LoraLayer

    out = {}
    for name, module in dit.named_modules():
        if isinstance(module, LoraLayer) and ADAPTER in module.lora_A:
            a = module.lora_A[ADAPTER].weight.detach().float()
            b = module.lora_B[ADAPTER].weight.detach().float() * (module.scaling[ADAPTER] * scale)
            out[name] = (a, b)
    return out
