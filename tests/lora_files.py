"""Random LoRA files in the published layouts, and the model they should make, for the LoRA tests.

The name maps here are written out independently of vidgen's key tables, so the tests check those tables.
"""

from __future__ import annotations

import copy
import json

import torch
from safetensors.torch import save_file

# Wan module (inside blocks.{i}.) -> diffusers module, and -> (our module, part, parts).
WAN_TO_DIFFUSERS = {
    "self_attn.q": "attn1.to_q", "self_attn.k": "attn1.to_k", "self_attn.v": "attn1.to_v",
    "self_attn.o": "attn1.to_out.0", "cross_attn.q": "attn2.to_q", "cross_attn.k": "attn2.to_k",
    "cross_attn.v": "attn2.to_v", "cross_attn.o": "attn2.to_out.0", "ffn.0": "ffn.net.0.proj", "ffn.2": "ffn.net.2",
}
WAN_TO_OURS = {
    "self_attn.q": ("self_attn.qkv", 0, 3), "self_attn.k": ("self_attn.qkv", 1, 3),
    "self_attn.v": ("self_attn.qkv", 2, 3), "self_attn.o": ("self_attn.out", 0, 1),
    "cross_attn.q": ("cross_attn.q", 0, 1), "cross_attn.k": ("cross_attn.kv", 0, 2),
    "cross_attn.v": ("cross_attn.kv", 1, 2), "cross_attn.o": ("cross_attn.out", 0, 1),
    "ffn.0": ("ffn.fc1", 0, 1), "ffn.2": ("ffn.fc2", 0, 1),
}


def random_lora(dit, modules=None, blocks=None, rank=3, alpha=None, seed=0, ranks=None):
    """{"blocks.{i}.{wan module}": (down (r, in), up (out, r), alpha or None)} with nonzero factors."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for i in blocks if blocks is not None else range(dit.config.num_layers):
        for m in modules or WAN_TO_OURS:
            ours, _, parts = WAN_TO_OURS[m]
            layer = dit.get_submodule(f"blocks.{i}.{ours}")
            r = (ranks or {}).get(m, rank)
            down = torch.randn(r, layer.in_features, generator=g) / layer.in_features ** 0.5
            up = torch.randn(layer.out_features // parts, r, generator=g) * 0.3
            out[f"blocks.{i}.{m}"] = (down, up, alpha)
    return out


def _wan_name(name):
    i, m = name.split(".", 2)[1], name.split(".", 2)[2]
    return i, m


def to_layout(lora, layout):
    """The state dict of `lora` in "diffusers" (alpha in metadata only), "wan" (lora_down/up, .alpha), "wan_ab"
    (lora_A/B), "kohya" (musubi-tuner's) or "ours" layout."""
    sd = {}
    for name, (down, up, alpha) in lora.items():
        i, m = _wan_name(name)
        if layout == "diffusers":
            base, a, b = f"transformer.blocks.{i}.{WAN_TO_DIFFUSERS[m]}", ".lora_A.weight", ".lora_B.weight"
        elif layout in ("wan", "wan_ab"):
            base = f"diffusion_model.blocks.{i}.{m}"
            a, b = (".lora_down.weight", ".lora_up.weight") if layout == "wan" else (".lora_A.weight", ".lora_B.weight")
        elif layout == "kohya":
            base, a, b = f"lora_unet_blocks_{i}_{m.replace('.', '_')}", ".lora_down.weight", ".lora_up.weight"
        else:
            raise ValueError(layout)
        sd[base + a], sd[base + b] = down.clone(), up.clone()
        if alpha is not None and layout != "diffusers":
            sd[base + ".alpha"] = torch.tensor(float(alpha))
    return sd


def save_lora(sd, path, adapter_config=None):
    """Write a state dict, with diffusers' adapter metadata (prefixed `transformer.` as pipelines write it)."""
    metadata = {"format": "pt"}
    if adapter_config:
        metadata["lora_adapter_metadata"] = json.dumps({f"transformer.{k}": v for k, v in adapter_config.items()})
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path), metadata=metadata)
    return path


def merged(dit, loras_and_weights):
    """A copy of `dit` with each lora's weight · (alpha/rank) · up @ down added to our fused weights' rows."""
    ref = copy.deepcopy(dit)
    with torch.no_grad():
        for lora, weight in loras_and_weights:
            for name, (down, up, alpha) in lora.items():
                i, m = _wan_name(name)
                ours, part, _ = WAN_TO_OURS[m]
                w = ref.get_submodule(f"blocks.{i}.{ours}").weight
                rows = up.shape[0]
                scale = 1.0 if alpha is None else alpha / down.shape[0]
                w[part * rows:(part + 1) * rows] += (weight * scale * (up @ down)).to(w.dtype)
    return ref


def rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()
