"""Checkpoint formats: diffusers `AutoencoderKLWan` and the original Wan 2.1 `Wan2.1_VAE.pth`, to and from ours.

Our state-dict names are the diffusers names (so a diffusers folder loads without renaming; only its config is
translated). The original Wan layout differs by module names and by flat `nn.Sequential` indices; it is mapped by the
tables below, one row per module (prefix table, generated from the config) times one row per parameter (suffix tables).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from causal_vae.config import VAEConfig

# --- diffusers ---------------------------------------------------------------------------------------------------

DIFFUSERS_CLASS = "AutoencoderKLWan"
_DIFFUSERS_SAME = ("base_dim", "z_dim", "dim_mult", "num_res_blocks", "attn_scales", "dropout", "latents_mean",
                   "latents_std", "in_channels", "out_channels")  # fmt: skip


def config_from_diffusers(cfg: Mapping[str, Any], where: str) -> VAEConfig:
    """VAEConfig from a diffusers AutoencoderKLWan config.json mapping; errors on Wan 2.2-style options we lack."""
    if cfg.get("_class_name") != DIFFUSERS_CLASS:
        raise ValueError(f"{where}: _class_name is {cfg.get('_class_name')!r}, expected {DIFFUSERS_CLASS!r} (a Wan VAE)")
    if cfg.get("is_residual") or cfg.get("patch_size") not in (None, 1):
        raise ValueError(f"{where}: is_residual/patch_size set: this is a Wan 2.2 VAE, only Wan 2.1's is supported")
    defaults = VAEConfig()
    kwargs = {k: cfg[k] for k in _DIFFUSERS_SAME if k in cfg}
    kwargs["temporal_downsample"] = cfg.get("temperal_downsample", defaults.temporal_downsample)  # sic, diffusers' name
    if cfg.get("decoder_base_dim") not in (None, kwargs.get("base_dim", defaults.base_dim)):
        kwargs["decoder_base_dim"] = cfg["decoder_base_dim"]  # a wider (or narrower) decoder; else the same as base_dim
    return VAEConfig(**kwargs)


def config_to_diffusers(cfg: VAEConfig) -> dict[str, Any]:
    out = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.to_dict().items() if k in _DIFFUSERS_SAME}
    out["temperal_downsample"] = list(cfg.temporal_downsample)
    if cfg.decoder_base_dim is not None:
        out["decoder_base_dim"] = cfg.decoder_base_dim
    return {"_class_name": DIFFUSERS_CLASS, **out}


# --- original Wan 2.1 layout -------------------------------------------------------------------------------------

# Parameter names inside one module: (original suffix, our suffix). The original residual block is one
# nn.Sequential(norm, SiLU, conv, norm, SiLU, Dropout, conv), hence indices 0, 2, 3, 6; its head is (norm, SiLU, conv).
RESIDUAL_PARAMS = (
    ("residual.0.gamma", "norm1.gamma"),
    ("residual.2.weight", "conv1.weight"),
    ("residual.2.bias", "conv1.bias"),
    ("residual.3.gamma", "norm2.gamma"),
    ("residual.6.weight", "conv2.weight"),
    ("residual.6.bias", "conv2.bias"),
    ("shortcut.weight", "conv_shortcut.weight"),
    ("shortcut.bias", "conv_shortcut.bias"),
)
ATTENTION_PARAMS = tuple((n, n) for n in ("norm.gamma", "to_qkv.weight", "to_qkv.bias", "proj.weight", "proj.bias"))
RESAMPLE_PARAMS = tuple((n, n) for n in ("resample.1.weight", "resample.1.bias", "time_conv.weight", "time_conv.bias"))
CONV_PARAMS = (("weight", "weight"), ("bias", "bias"))
NORM_PARAMS = (("gamma", "gamma"),)


def module_table(cfg: VAEConfig) -> list[tuple[str, str, tuple]]:
    """Rows (original module prefix, our module prefix, parameter table) for every module with weights."""
    rows = [
        ("encoder.conv1", "encoder.conv_in", CONV_PARAMS),
        ("encoder.head.0", "encoder.norm_out", NORM_PARAMS),
        ("encoder.head.2", "encoder.conv_out", CONV_PARAMS),
        ("conv1", "quant_conv", CONV_PARAMS),
        ("conv2", "post_quant_conv", CONV_PARAMS),
        ("decoder.conv1", "decoder.conv_in", CONV_PARAMS),
        ("decoder.head.0", "decoder.norm_out", NORM_PARAMS),
        ("decoder.head.2", "decoder.conv_out", CONV_PARAMS),
    ]
    for part in ("encoder", "decoder"):
        rows += [
            (f"{part}.middle.0", f"{part}.mid_block.resnets.0", RESIDUAL_PARAMS),
            (f"{part}.middle.1", f"{part}.mid_block.attentions.0", ATTENTION_PARAMS),
            (f"{part}.middle.2", f"{part}.mid_block.resnets.1", RESIDUAL_PARAMS),
        ]
    levels = len(cfg.dim_mult)
    n = 0  # both layouts keep the encoder's blocks in one flat list: residual blocks, then the level's downsample
    for level in range(levels):
        for _ in range(cfg.num_res_blocks):
            rows.append((f"encoder.downsamples.{n}", f"encoder.down_blocks.{n}", RESIDUAL_PARAMS))
            n += 1
        if level < levels - 1:
            rows.append((f"encoder.downsamples.{n}", f"encoder.down_blocks.{n}", RESAMPLE_PARAMS))
            n += 1
    n = 0  # the original decoder is flat too; ours groups each level's blocks into up_blocks[level]
    for level in range(levels):
        for j in range(cfg.num_res_blocks + 1):
            rows.append((f"decoder.upsamples.{n}", f"decoder.up_blocks.{level}.resnets.{j}", RESIDUAL_PARAMS))
            n += 1
        if level < levels - 1:
            rows.append((f"decoder.upsamples.{n}", f"decoder.up_blocks.{level}.upsamplers.0", RESAMPLE_PARAMS))
            n += 1
    return rows


def key_table(cfg: VAEConfig, our_keys) -> dict[str, str]:
    """{original key: our key} for exactly the parameters in `our_keys` (a model's state-dict keys)."""
    our_keys = set(our_keys)
    table = {}
    for orig_prefix, our_prefix, params in module_table(cfg):
        for orig_suffix, our_suffix in params:
            ours = f"{our_prefix}.{our_suffix}"
            if ours in our_keys:
                table[f"{orig_prefix}.{orig_suffix}"] = ours
    unmapped = sorted(our_keys - set(table.values()))
    if unmapped:  # a bug in the table, not in the user's file
        raise AssertionError(f"parameters missing from the original-layout table: {unmapped[:8]}")
    return table


def original_to_ours(sd: Mapping[str, torch.Tensor], cfg: VAEConfig, our_keys) -> dict[str, torch.Tensor]:
    """Rename an original Wan 2.1 VAE state dict to ours; keys the table does not know are kept (and reported later)."""
    table = key_table(cfg, our_keys)
    return {table.get(k, k): v for k, v in sd.items()}


def ours_to_original(sd: Mapping[str, torch.Tensor], cfg: VAEConfig) -> dict[str, torch.Tensor]:
    """Inverse of `original_to_ours`: our state dict in the original Wan 2.1 layout."""
    inverse = {ours: orig for orig, ours in key_table(cfg, sd.keys()).items()}
    return {inverse[k]: v for k, v in sd.items()}
