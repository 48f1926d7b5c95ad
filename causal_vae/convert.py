"""Checkpoint formats: diffusers `AutoencoderKLWan` and the original `Wan2.1_VAE.pth` / `Wan2.2_VAE.pth`, both ways.

Our state-dict names are the diffusers names (so a diffusers folder loads without renaming; only its config is
translated). The original Wan layout differs by module names and by `nn.Sequential` indices (flat lists in Wan 2.1,
one list per level in Wan 2.2); it is mapped by the tables below, one row per module (prefix table, generated from the
config) times one row per parameter (suffix tables).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from causal_vae.config import VAEConfig

# --- diffusers ---------------------------------------------------------------------------------------------------

DIFFUSERS_CLASS = "AutoencoderKLWan"
_DIFFUSERS_SAME = ("base_dim", "z_dim", "dim_mult", "num_res_blocks", "attn_scales", "dropout", "latents_mean",
                   "latents_std")  # fmt: skip


def config_from_diffusers(cfg: Mapping[str, Any], where: str) -> VAEConfig:
    """VAEConfig from a diffusers AutoencoderKLWan config.json mapping (Wan 2.1 or, with is_residual/patch_size, 2.2).

    diffusers counts in_channels/out_channels after patching (12 for Wan 2.2); ours are pixel channels (3). Its
    scale_factor_spatial/temporal, when given, must agree with the compression the structure implies.
    """
    if cfg.get("_class_name") != DIFFUSERS_CLASS:
        raise ValueError(f"{where}: _class_name is {cfg.get('_class_name')!r}, expected {DIFFUSERS_CLASS!r} (a Wan VAE)")
    defaults = VAEConfig()
    kwargs = {k: cfg[k] for k in _DIFFUSERS_SAME if k in cfg}
    kwargs["temporal_downsample"] = cfg.get("temperal_downsample", defaults.temporal_downsample)  # sic, diffusers' name
    if cfg.get("decoder_base_dim") not in (None, kwargs.get("base_dim", defaults.base_dim)):
        kwargs["decoder_base_dim"] = cfg["decoder_base_dim"]  # a wider (or narrower) decoder; else the same as base_dim
    patch = cfg.get("patch_size") or 1  # diffusers writes None for no patching
    if not isinstance(patch, int) or patch < 1:
        raise ValueError(f"{where}: patch_size is {patch!r}, expected null or a positive integer")
    kwargs["patch_size"], kwargs["residual"] = patch, bool(cfg.get("is_residual", False))
    for name in ("in_channels", "out_channels"):
        channels = cfg.get(name, 3 * patch**2)
        if channels % patch**2:
            raise ValueError(f"{where}: {name} {channels} is not a multiple of patch_size² = {patch**2}")
        kwargs[name] = channels // patch**2
    out = VAEConfig(**kwargs)
    for key, ours in (("scale_factor_spatial", out.spatial_compression), ("scale_factor_temporal",
                                                                          out.temporal_compression)):
        if cfg.get(key) is not None and cfg[key] != ours:
            raise ValueError(f"{where}: {key} is {cfg[key]}, but dim_mult, temperal_downsample and patch_size make "
                             f"{ours}; the config is inconsistent")
    return out


def config_to_diffusers(cfg: VAEConfig) -> dict[str, Any]:
    out = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.to_dict().items() if k in _DIFFUSERS_SAME}
    out["temperal_downsample"] = list(cfg.temporal_downsample)
    out["in_channels"], out["out_channels"] = cfg.pixel_channels, cfg.out_channels * cfg.patch_size**2
    if cfg.decoder_base_dim is not None:
        out["decoder_base_dim"] = cfg.decoder_base_dim
    if cfg.residual or cfg.patch_size > 1:
        out.update(is_residual=cfg.residual, patch_size=cfg.patch_size,
                   scale_factor_spatial=cfg.spatial_compression, scale_factor_temporal=cfg.temporal_compression)
    return {"_class_name": DIFFUSERS_CLASS, **out}


# --- original Wan layout -----------------------------------------------------------------------------------------

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
    return _shared_rows() + (_residual_level_rows(cfg) if cfg.residual else _flat_level_rows(cfg))


def _shared_rows() -> list[tuple[str, str, tuple]]:
    """The stem, head, quant convs and middle blocks: named alike in Wan 2.1 and 2.2."""
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
    return rows


def _flat_level_rows(cfg: VAEConfig) -> list[tuple[str, str, tuple]]:
    """Wan 2.1's levels: one flat nn.Sequential per side."""
    rows = []
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


def _residual_level_rows(cfg: VAEConfig) -> list[tuple[str, str, tuple]]:
    """Wan 2.2's levels: `encoder.downsamples.{level}.downsamples.{i}` holds the level's residual blocks, then its
    resample at i = num_res_blocks; `decoder.upsamples.{level}.upsamples.{i}` the same with num_res_blocks + 1 blocks.
    The shortcuts have no weights."""
    rows = []
    levels = len(cfg.dim_mult)
    for level in range(levels):
        enc, dec = f"encoder.downsamples.{level}.downsamples", f"decoder.upsamples.{level}.upsamples"
        for i in range(cfg.num_res_blocks):
            rows.append((f"{enc}.{i}", f"encoder.down_blocks.{level}.resnets.{i}", RESIDUAL_PARAMS))
        for i in range(cfg.num_res_blocks + 1):
            rows.append((f"{dec}.{i}", f"decoder.up_blocks.{level}.resnets.{i}", RESIDUAL_PARAMS))
        if level < levels - 1:
            rows.append((f"{enc}.{cfg.num_res_blocks}", f"encoder.down_blocks.{level}.downsampler", RESAMPLE_PARAMS))
            rows.append((f"{dec}.{cfg.num_res_blocks + 1}", f"decoder.up_blocks.{level}.upsampler", RESAMPLE_PARAMS))
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
    """Rename an original Wan VAE state dict to ours; keys the table does not know are kept (and reported later)."""
    table = key_table(cfg, our_keys)
    return {table.get(k, k): v for k, v in sd.items()}


def ours_to_original(sd: Mapping[str, torch.Tensor], cfg: VAEConfig) -> dict[str, torch.Tensor]:
    """Inverse of `original_to_ours`: our state dict in the original Wan layout (2.1's or 2.2's, per the config)."""
    inverse = {ours: orig for orig, ours in key_table(cfg, sd.keys()).items()}
    return {inverse[k]: v for k, v in sd.items()}
