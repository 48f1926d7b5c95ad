"""Trained adapters → one `.safetensors` in the diffusers/peft layout of `WanTransformer3DModel`, and back.

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


def from_diffusers(tensors: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The inverse of `to_diffusers` for files it wrote: split projections are fused back (their A must be one)."""
    inverse = {_their_names(k[: -len(".weight")]): k[: -len(".weight")] for k in BLOCK if k.endswith(".weight")}
    out = {}
    for theirs, ours in inverse.items():
        blocks = sorted({k.split(".")[2] for k in tensors if k.startswith(f"{PREFIX}blocks.")
                         and k.endswith(f".{theirs[0]}.lora_A.weight")}, key=int)
        for i in blocks:
            stems = [f"{PREFIX}blocks.{i}.{t}" for t in theirs]
            missing = [f"{s}.lora_{x}.weight" for s in stems for x in "AB" if f"{s}.lora_{x}.weight" not in tensors]
            if missing:
                raise ValueError(f"adapter file lacks {missing[:2]}: {ours} needs all of {list(theirs)}")
            a = tensors[f"{stems[0]}.lora_A.weight"]
            if any(not torch.equal(tensors[f"{s}.lora_A.weight"], a) for s in stems[1:]):
                raise ValueError(f"{list(theirs)} of block {i} have different lora_A: not a split fused adapter")
            out[f"blocks.{i}.{ours}"] = (a, torch.cat([tensors[f"{s}.lora_B.weight"] for s in stems]))
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


def read_lora(path: str | Path) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], int]:
    """A file `export_lora` wrote → ({our linear: (A, B with its scale)}, rank)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LoRA file not found: {path}")
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if OURS_KEY not in meta:
        raise ValueError(f"{path} was not written by vidgen.lora.export (no {OURS_KEY!r} metadata); load other LoRA "
                         "files with the pipeline's LoRA loader")
    return from_diffusers(load_file(str(path))), int(json.loads(meta[OURS_KEY])["rank"])


def apply_lora_file(dit: nn.Module, path: str | Path) -> nn.Module:
    """Inject adapters into `dit` (as training does) and fill them from a file `export_lora` wrote; returns `dit`."""
    from vidgen.lora.train import ADAPTER, inject_lora, load_adapter_state
    from vidgen.train.config import LoRAConfig

    deltas, rank = read_lora(path)
    targets = tuple(sorted({name.split(".", 2)[2] for name in deltas}))
    inject_lora(dit, LoRAConfig(rank=rank, alpha=float(rank), target_modules=targets))  # the scale is in B
    state = {}
    for name, (a, b) in deltas.items():
        state[f"{name}.lora_A.{ADAPTER}.weight"] = a
        state[f"{name}.lora_B.{ADAPTER}.weight"] = b
    load_adapter_state(dit, state)
    return dit.requires_grad_(False)
