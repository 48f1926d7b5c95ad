"""Original Wan 2.1 / 2.2 (`WanModel` of the Wan repositories) <-> vidgen DiT: config keys and a table of state-dict names.

Table rows read `our name: (their names...)`; several names are concatenated along dim 0 in that order. Note Wan's
`norm3` is the cross-attention norm (its `norm2`, before the feed-forward, has no parameters).
"""

from __future__ import annotations

from typing import Any

from vidgen.dit.config import DiTConfig

KEY_PREFIXES = ("model.diffusion_model.",)  # repackaged single-file checkpoints carry this prefix

GLOBAL = {
    "patch_embedding.weight": ("patch_embedding.weight",),
    "patch_embedding.bias": ("patch_embedding.bias",),
    "text_embedding.fc1.weight": ("text_embedding.0.weight",),
    "text_embedding.fc1.bias": ("text_embedding.0.bias",),
    "text_embedding.fc2.weight": ("text_embedding.2.weight",),
    "text_embedding.fc2.bias": ("text_embedding.2.bias",),
    "time_embedding.fc1.weight": ("time_embedding.0.weight",),
    "time_embedding.fc1.bias": ("time_embedding.0.bias",),
    "time_embedding.fc2.weight": ("time_embedding.2.weight",),
    "time_embedding.fc2.bias": ("time_embedding.2.bias",),
    "time_modulation.weight": ("time_projection.1.weight",),
    "time_modulation.bias": ("time_projection.1.bias",),
    "head.modulation": ("head.modulation",),
    "head.proj.weight": ("head.head.weight",),
    "head.proj.bias": ("head.head.bias",),
    # Wan 2.1 I2V / FLF2V: the CLIP-token projection (a Sequential: LayerNorm, Linear, GELU, Linear, LayerNorm)
    "image_embedding.norm_in.weight": ("img_emb.proj.0.weight",),
    "image_embedding.norm_in.bias": ("img_emb.proj.0.bias",),
    "image_embedding.fc1.weight": ("img_emb.proj.1.weight",),
    "image_embedding.fc1.bias": ("img_emb.proj.1.bias",),
    "image_embedding.fc2.weight": ("img_emb.proj.3.weight",),
    "image_embedding.fc2.bias": ("img_emb.proj.3.bias",),
    "image_embedding.norm_out.weight": ("img_emb.proj.4.weight",),
    "image_embedding.norm_out.bias": ("img_emb.proj.4.bias",),
    "image_embedding.position": ("img_emb.emb_pos",),
}

BLOCK = {  # inside blocks.{i}. on both sides (checkpoint.key_table repeats them for every block)
    "self_attn.qkv.weight": ("self_attn.q.weight", "self_attn.k.weight", "self_attn.v.weight"),
    "self_attn.qkv.bias": ("self_attn.q.bias", "self_attn.k.bias", "self_attn.v.bias"),
    "self_attn.norm_q.weight": ("self_attn.norm_q.weight",),
    "self_attn.norm_k.weight": ("self_attn.norm_k.weight",),
    "self_attn.out.weight": ("self_attn.o.weight",),
    "self_attn.out.bias": ("self_attn.o.bias",),
    "cross_norm.weight": ("norm3.weight",),
    "cross_norm.bias": ("norm3.bias",),
    "cross_attn.q.weight": ("cross_attn.q.weight",),
    "cross_attn.q.bias": ("cross_attn.q.bias",),
    "cross_attn.kv.weight": ("cross_attn.k.weight", "cross_attn.v.weight"),
    "cross_attn.kv.bias": ("cross_attn.k.bias", "cross_attn.v.bias"),
    "cross_attn.norm_q.weight": ("cross_attn.norm_q.weight",),
    "cross_attn.norm_k.weight": ("cross_attn.norm_k.weight",),
    "cross_attn.out.weight": ("cross_attn.o.weight",),
    "cross_attn.out.bias": ("cross_attn.o.bias",),
    "cross_attn.kv_img.weight": ("cross_attn.k_img.weight", "cross_attn.v_img.weight"),
    "cross_attn.kv_img.bias": ("cross_attn.k_img.bias", "cross_attn.v_img.bias"),
    "cross_attn.norm_k_img.weight": ("cross_attn.norm_k_img.weight",),
    "ffn.fc1.weight": ("ffn.0.weight",),
    "ffn.fc1.bias": ("ffn.0.bias",),
    "ffn.fc2.weight": ("ffn.2.weight",),
    "ffn.fc2.bias": ("ffn.2.bias",),
    "modulation": ("modulation",),
}


def is_this_format(raw: dict[str, Any]) -> bool:
    return "dim" in raw and "num_heads" in raw


# Wan 2.1's "i2v"/"flf2v" models attend to CLIP tokens; Wan 2.2's image-to-video experts name themselves "i2v" too but
# have no CLIP branch, and the configs give neither the tokens' width nor the position table's length: all three are
# read from the weights' shapes (`shapes`, from the safetensors headers).
MODEL_TYPES = ("t2v", "i2v", "flf2v", "ti2v")
IMAGE_NORM, IMAGE_POSITION = "img_emb.proj.0.weight", "img_emb.emb_pos"


def config_to_ours(raw: dict[str, Any], shapes: dict[str, tuple[int, ...]] | None = None) -> DiTConfig:
    """`shapes`: tensor name -> shape of the checkpoint's image-branch tensors (absent: no CLIP branch)."""
    shapes = shapes or {}
    model_type = raw.get("model_type", "t2v")
    if model_type not in MODEL_TYPES:
        raise ValueError(f"Wan model_type {model_type!r} is not supported; expected one of {MODEL_TYPES}")
    if tuple(raw.get("window_size", (-1, -1))) != (-1, -1):
        raise ValueError(f"Wan window_size {raw['window_size']} (local attention) is not supported; expected [-1, -1]")
    image = model_type in ("i2v", "flf2v") and IMAGE_NORM in shapes
    return DiTConfig(
        dim=raw["dim"],
        ffn_dim=raw["ffn_dim"],
        num_heads=raw["num_heads"],
        num_layers=raw["num_layers"],
        in_dim=raw.get("in_dim", 16),
        out_dim=raw.get("out_dim", 16),
        text_dim=raw.get("text_dim", 4096),
        freq_dim=raw.get("freq_dim", 256),
        patch_size=tuple(raw.get("patch_size", (1, 2, 2))),
        eps=raw.get("eps", 1e-6),
        qk_norm=raw.get("qk_norm", True),
        cross_attn_norm=raw.get("cross_attn_norm", True),
        text_len=raw.get("text_len", 512),
        image_dim=shapes[IMAGE_NORM][0] if image else None,
        image_tokens=shapes[IMAGE_POSITION][1] if image and IMAGE_POSITION in shapes else None,
    )


def config_from_ours(config: DiTConfig) -> dict[str, Any]:
    return {
        "_class_name": "WanModel",
        "model_type": _model_type(config),
        "patch_size": list(config.patch_size),
        "text_len": config.text_len,
        "in_dim": config.in_dim,
        "dim": config.dim,
        "ffn_dim": config.ffn_dim,
        "freq_dim": config.freq_dim,
        "text_dim": config.text_dim,
        "out_dim": config.out_dim,
        "num_heads": config.num_heads,
        "num_layers": config.num_layers,
        "window_size": [-1, -1],
        "qk_norm": config.qk_norm,
        "cross_attn_norm": config.cross_attn_norm,
        "eps": config.eps,
    }


def _model_type(config: DiTConfig) -> str:
    if config.image_dim is not None:
        return "flf2v" if config.image_tokens else "i2v"
    return "t2v" if config.in_dim == config.out_dim else "i2v"
