"""Trained adapters → one `.safetensors` in the diffusers/peft layout of `WanTransformer3DModel` (which the pipeline's
LoRA loader, `VideoPipeline.load_lora_weights` / `vidgen.lora.adapters.LoraAdapters`, reads back).

Keys: `transformer.blocks.{i}.attn1.to_q.lora_A.weight` (rank, in) and `....lora_B.weight` (out, rank), for the
diffusers names of each adapted linear (`vidgen.dit.convert_diffusers.BLOCK`). Our fused projections split exactly:
a `self_attn.qkv` adapter (A (r, D), B (3D, r)) is three adapters to_q / to_k / to_v that share A, with B cut in three
along dim 0 (`cross_attn.kv` likewise into to_k / to_v), since (B A x) cut in three = (B_q A x, B_k A x, B_v A x).

Scaling: the file's lora_B already holds (alpha / rank) · B, and its metadata says lora_alpha = rank (scale 1). Any
loader then computes the trained update, whether it reads alpha from the metadata (diffusers' `load_lora_weights` /
`load_lora_adapter` read `lora_adapter_metadata`, keys prefixed `transformer.`) or, finding no `.alpha` key, uses
scale 1 (ComfyUI, kohya-style loaders; diffusers without metadata takes alpha = rank). `.alpha` tensors are left out
on purpose: diffusers' peft loader does not expect them among diffusers-layout keys. The trained rank and alpha are
kept under `vidgen_lora` for the record.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from vidgen.dit.convert_diffusers import BLOCK

LORA_FILE = "lora.safetensors"
PREFIX = "transformer."  # the pipeline component the adapters belong to, as diffusers names it
METADATA_KEY = "lora_adapter_metadata"  # diffusers' key for the peft LoraConfig kwargs (JSON)
OURS_KEY = "vidgen_lora"


def _their_names(our_block_name: str) -> tuple[str, ...]:
    """`self_attn.qkv` → (`attn1.to_q`, `attn1.to_k`, `attn1.to_v`): the diffusers linears one of ours stands for."""
    key = f"{our_block_name}.weight"
    if key not in BLOCK:
        raise ValueError(f"no diffusers name for the adapted linear {our_block_name!r}; known: "
                         f"{sorted(k[:-len('.weight')] for k in BLOCK if k.endswith('.weight'))}")
    return tuple(n[: -len(".weight")] for n in BLOCK[key])


def to_diffusers(deltas: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """{our linear `blocks.{i}.{name}`: (A (r, in), B (out, r))} → diffusers/peft keys (prefix `transformer.`)."""
    out = {}
    for name, (a, b) in deltas.items():
        block, _, inner = name.partition(".")[2].partition(".")  # "blocks.3.self_attn.qkv" → "3", "self_attn.qkv"
        if not name.startswith("blocks.") or not block.isdigit():
            raise ValueError(f"adapted linear {name!r} is not inside blocks.N; only block linears can be exported")
        theirs = _their_names(inner)
        if b.shape[0] % len(theirs):
            raise ValueError(f"{name}: lora_B has {b.shape[0]} rows, not divisible into {len(theirs)} projections")
        for their, b_part in zip(theirs, b.chunk(len(theirs), dim=0)):  # (out / n, r) each
            stem = f"{PREFIX}blocks.{block}.{their}"
            out[f"{stem}.lora_A.weight"] = a.contiguous().clone()
            out[f"{stem}.lora_B.weight"] = b_part.contiguous().clone()
    return out


def export_lora(dit: nn.Module, path: str | Path, *, alpha: float, base: str = "") -> Path:
    """Write the adapters of an injected `dit` (vidgen.lora.train) to `path` in the diffusers layout; returns it."""
    from safetensors.torch import save_file

    from vidgen.lora.train import adapter_deltas

    deltas = adapter_deltas(dit)
    if not deltas:
        raise ValueError("the model has no LoRA adapters to export (inject them with vidgen.lora.train.inject_lora)")
    ranks = {a.shape[0] for a, _ in deltas.values()}
    if len(ranks) != 1:
        raise ValueError(f"adapters of one file share one rank, got ranks {sorted(ranks)}")
    rank = ranks.pop()
    tensors = to_diffusers(deltas)
    targets = sorted({k[len(PREFIX):].rsplit(".lora_", 1)[0] for k in tensors})
    peft_kwargs = {"r": rank, "lora_alpha": rank, "target_modules": targets, "lora_dropout": 0.0, "bias": "none"}
    metadata = {
        "format": "pt",
        METADATA_KEY: json.dumps({f"{PREFIX}{k}": v for k, v in peft_kwargs.items()}, sort_keys=True),
        OURS_KEY: json.dumps({"rank": rank, "alpha": alpha, "scale_in_lora_B": alpha / rank, "base": base}),
    }
    path = Path(path)
    save_file(tensors, str(path), metadata=metadata)
    return path
