"""diffusers `WanTransformer3DModel` <-> vidgen DiT: config keys and a table of state-dict names.

Table rows read `our name: (their names...)`; several names are concatenated along dim 0 in that order (our fused
q|k|v and k|v projections), and split back equally for the inverse.
"""

from __future__ import annotations

from typing import Any

from vidgen.dit.config import DiTConfig

CLASS_NAME = "WanTransformer3DModel"
KEY_PREFIXES: tuple[str, ...] = ()  # prefixes stripped from checkpoint keys before the table lookup

GLOBAL = {
    "patch_embedding.weight": ("patch_embedding.weight",),
    "patch_embedding.bias": ("patch_embedding.bias",),
    "text_embedding.fc1.weight": ("condition_embedder.text_embedder.linear_1.weight",),
    "text_embedding.fc1.bias": ("condition_embedder.text_embedder.linear_1.bias",),
    "text_embedding.fc2.weight": ("condition_embedder.text_embedder.linear_2.weight",),
    "text_embedding.fc2.bias": ("condition_embedder.text_embedder.linear_2.bias",),
    "time_embedding.fc1.weight": ("condition_embedder.time_embedder.linear_1.weight",),
    "time_embedding.fc1.bias": ("condition_embedder.time_embedder.linear_1.bias",),
    "time_embedding.fc2.weight": ("condition_embedder.time_embedder.linear_2.weight",),
    "time_embedding.fc2.bias": ("condition_embedder.time_embedder.linear_2.bias",),
    "time_modulation.weight": ("condition_embedder.time_proj.weight",),
    "time_modulation.bias": ("condition_embedder.time_proj.bias",),
    "head.modulation": ("scale_shift_table",),
    "head.proj.weight": ("proj_out.weight",),
    "head.proj.bias": ("proj_out.bias",),
    # image-conditioned models (Wan 2.1 I2V / FLF2V) only
    "image_embedding.norm_in.weight": ("condition_embedder.image_embedder.norm1.weight",),
    "image_embedding.norm_in.bias": ("condition_embedder.image_embedder.norm1.bias",),
    "image_embedding.fc1.weight": ("condition_embedder.image_embedder.ff.net.0.proj.weight",),
    "image_embedding.fc1.bias": ("condition_embedder.image_embedder.ff.net.0.proj.bias",),
    "image_embedding.fc2.weight": ("condition_embedder.image_embedder.ff.net.2.weight",),
    "image_embedding.fc2.bias": ("condition_embedder.image_embedder.ff.net.2.bias",),
    "image_embedding.norm_out.weight": ("condition_embedder.image_embedder.norm2.weight",),
    "image_embedding.norm_out.bias": ("condition_embedder.image_embedder.norm2.bias",),
    "image_embedding.position": ("condition_embedder.image_embedder.pos_embed",),
}

BLOCK = {  # inside blocks.{i}. on both sides (checkpoint.key_table repeats them for every block)
    "self_attn.qkv.weight": ("attn1.to_q.weight", "attn1.to_k.weight", "attn1.to_v.weight"),
    "self_attn.qkv.bias": ("attn1.to_q.bias", "attn1.to_k.bias", "attn1.to_v.bias"),
    "self_attn.norm_q.weight": ("attn1.norm_q.weight",),
    "self_attn.norm_k.weight": ("attn1.norm_k.weight",),
    "self_attn.out.weight": ("attn1.to_out.0.weight",),
    "self_attn.out.bias": ("attn1.to_out.0.bias",),
    "cross_norm.weight": ("norm2.weight",),
    "cross_norm.bias": ("norm2.bias",),
    "cross_attn.q.weight": ("attn2.to_q.weight",),
    "cross_attn.q.bias": ("attn2.to_q.bias",),
    "cross_attn.kv.weight": ("attn2.to_k.weight", "attn2.to_v.weight"),
    "cross_attn.kv.bias": ("attn2.to_k.bias", "attn2.to_v.bias"),
    "cross_attn.norm_q.weight": ("attn2.norm_q.weight",),
    "cross_attn.norm_k.weight": ("attn2.norm_k.weight",),
    "cross_attn.out.weight": ("attn2.to_out.0.weight",),
    "cross_attn.out.bias": ("attn2.to_out.0.bias",),
    "cross_attn.kv_img.weight": ("attn2.add_k_proj.weight", "attn2.add_v_proj.weight"),
    "cross_attn.kv_img.bias": ("attn2.add_k_proj.bias", "attn2.add_v_proj.bias"),
    "cross_attn.norm_k_img.weight": ("attn2.norm_added_k.weight",),
    "ffn.fc1.weight": ("ffn.net.0.proj.weight",),
    "ffn.fc1.bias": ("ffn.net.0.proj.bias",),
    "ffn.fc2.weight": ("ffn.net.2.weight",),
    "ffn.fc2.bias": ("ffn.net.2.bias",),
    "modulation": ("scale_shift_table",),
}


def is_this_format(raw: dict[str, Any]) -> bool:
    return raw.get("_class_name") == CLASS_NAME or "num_attention_heads" in raw


def config_to_ours(raw: dict[str, Any]) -> DiTConfig:
    heads = raw.get("num_attention_heads", 40)
    dim = heads * raw.get("attention_head_dim", 128)
    image_dim, added = raw.get("image_dim"), raw.get("added_kv_proj_dim")
    if (image_dim is None) != (added is None) or added not in (None, dim):
        raise ValueError(f"WanTransformer3DModel with image_dim={image_dim} and added_kv_proj_dim={added}: image "
                         f"cross-attention needs both, the latter equal to the model width {dim}")
    heads = raw.get("num_attention_heads", 40)
    return DiTConfig(
        dim=dim,
        ffn_dim=raw.get("ffn_dim", 13824),
        num_heads=heads,
        num_layers=raw.get("num_layers", 40),
        in_dim=raw.get("in_channels", 16),
        out_dim=raw.get("out_channels") or raw.get("in_channels", 16),
        text_dim=raw.get("text_dim", 4096),
        freq_dim=raw.get("freq_dim", 256),
        patch_size=tuple(raw.get("patch_size", (1, 2, 2))),
        eps=raw.get("eps", 1e-6),
        qk_norm=True,  # diffusers' WanAttention always applies its q/k RMS norms, whatever `qk_norm` says
        cross_attn_norm=raw.get("cross_attn_norm", True),
        image_dim=image_dim,
        image_tokens=raw.get("pos_embed_seq_len"),
    )


def config_from_ours(config: DiTConfig) -> dict[str, Any]:
    if not config.qk_norm:
        raise ValueError("diffusers' WanTransformer3DModel always normalises q and k; cannot export qk_norm=False")
    return {
        "_class_name": CLASS_NAME,
        "patch_size": list(config.patch_size),
        "num_attention_heads": config.num_heads,
        "attention_head_dim": config.head_dim,
        "in_channels": config.in_dim,
        "out_channels": config.out_dim,
        "text_dim": config.text_dim,
        "freq_dim": config.freq_dim,
        "ffn_dim": config.ffn_dim,
        "num_layers": config.num_layers,
        "cross_attn_norm": config.cross_attn_norm,
        "qk_norm": "rms_norm_across_heads",
        "eps": config.eps,
        "image_dim": config.image_dim,
        "added_kv_proj_dim": None if config.image_dim is None else config.dim,
        "rope_max_seq_len": 1024,
        "pos_embed_seq_len": config.image_tokens,
    }
