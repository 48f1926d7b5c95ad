"""peft LoRA adapters on our DiT's linear layers: adding one (for loading a file, or for training), and finding them.

`add_lora` wraps each target `nn.Linear` in a `peft.tuners.lora.Linear` (the original stays as its `base_layer`, so
our fused `qkv` / `kv` projections and their fast kernel are unchanged) with adapter `lora_A.<name>` `(r, in)` and
`lora_B.<name>` `(out, r)`, scaled by alpha / r. A rank-r adapter on the fused `self_attn.qkv` is the same function
as three rank-r adapters on q, k, v sharing one A (export: lora_A = A for each, lora_B = that projection's rows of B).
"""

from __future__ import annotations

import re
import warnings
from typing import Iterator, Mapping

import torch.nn as nn
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora import LoraLayer

from vidgen.lora.config import BLOCK_LINEARS
from vidgen.lora.plan import base_linear


def lora_targets(dit: nn.Module, names: tuple[str, ...] = BLOCK_LINEARS) -> list[str]:
    """Full module names of `names` (our names inside a block, e.g. "self_attn.qkv") in every block of `dit`, for
    `add_lora`'s `ranks`."""
    out = [f"blocks.{i}.{n}" for i in range(len(dit.blocks)) for n in names]
    for name in out:
        if not isinstance(base_linear(dit, name), nn.Linear):
            raise ValueError(f"{name} is a {type(base_linear(dit, name)).__name__}, not a linear layer")
    return out


def add_lora(dit: nn.Module, adapter_name: str, ranks: Mapping[str, int], alphas: Mapping[str, float] | None = None,
             dropout: float = 0.0) -> LoraConfig:
    """Add peft LoRA adapter `adapter_name` to the linear modules named in `ranks` (module -> rank); scale
    alphas[m] / ranks[m] (default alpha = rank: scale 1). The adapter starts as peft initialises it (B = 0, so the
    model is unchanged), trainable, and (as peft and diffusers do) becomes the only active adapter; returns the
    LoraConfig used."""
    if not ranks:
        raise ValueError("add_lora needs at least one target module in `ranks`")
    check_adapter_name(dit, adapter_name)
    alphas = dict(alphas or {})
    for name, rank in ranks.items():
        if not isinstance(base_linear(dit, name), nn.Linear):
            raise ValueError(f"add_lora: {name} is a {type(base_linear(dit, name)).__name__}, not a linear layer")
        if not (isinstance(rank, int) and rank >= 1):
            raise ValueError(f"add_lora: rank {rank!r} for {name}; expected a whole number >= 1")
    exact = {f"^{re.escape(name)}": rank for name, rank in ranks.items()}  # peft patterns match a name's tail
    config = LoraConfig(
        r=next(iter(ranks.values())), lora_alpha=next(iter(ranks.values())), lora_dropout=dropout,
        target_modules=list(ranks),
        rank_pattern=exact,
        alpha_pattern={f"^{re.escape(name)}": alphas.get(name, rank) for name, rank in ranks.items()},
    )
    with warnings.catch_warnings():  # a second adapter is intended here, peft's warning about it is not for users
        warnings.filterwarnings("ignore", message="Already found a `peft_config`")
        inject_adapter_in_model(config, dit, adapter_name=adapter_name)
    return config


def check_adapter_name(dit: nn.Module, name: str) -> None:
    """A ValueError unless `name` is free and usable as a key of peft's ModuleDicts."""
    if not (isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9_\-]+", name)) or hasattr(nn.ModuleDict(), name):
        raise ValueError(f"adapter name {name!r} is not usable; expected letters, digits, _ and - (and not a "
                         f"torch Module attribute such as 'train' or 'eval')")
    if name in adapter_names(dit):
        raise ValueError(f"adapter name {name!r} is already loaded (adapters: {adapter_names(dit)}); pick another")


def lora_layers(dit: nn.Module) -> Iterator[tuple[str, LoraLayer]]:
    """(name, layer) of every peft LoRA layer in `dit`, in module order."""
    for name, module in dit.named_modules():
        if isinstance(module, LoraLayer):
            yield name, module


def adapter_names(dit: nn.Module) -> list[str]:
    """Every adapter any layer of `dit` holds, sorted."""
    return sorted({a for _, layer in lora_layers(dit) for a in layer.lora_A})


def remove_lora_layers(dit: nn.Module) -> None:
    """Put every wrapped layer's base layer back in its place (merged weights stay as they are)."""
    for name, layer in list(lora_layers(dit)):
        parent, _, child = name.rpartition(".")
        setattr(dit.get_submodule(parent) if parent else dit, child, layer.get_base_layer())
    if hasattr(dit, "peft_config"):
        del dit.peft_config
