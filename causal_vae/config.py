"""VAEConfig: the frozen description of a causal 3D VAE, and its named presets.

The architecture is Wan 2.1's VAE: `len(dim_mult) - 1` resampling levels, each halving height and width (8× in total for
the usual 4 levels) and, where `temporal_downsample` says so, halving time after the first frame (4×). Wan 2.2's VAE
(`residual=True, patch_size=2`) folds each 2×2 pixel patch into channels first (16× in all) and gives every level a
parameter-free shortcut that averages (encoder) or duplicates (decoder) across the resampling.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

# Per-channel statistics of Wan 2.1's latent space (published with its VAE); latents are normalised as (mu - mean) / std.
WAN21_LATENTS_MEAN = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)  # fmt: skip
WAN21_LATENTS_STD = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)  # fmt: skip
# The same for Wan 2.2's 48-channel latent space (the VAE of Wan2.2-TI2V-5B, as published in its config).
WAN22_LATENTS_MEAN = (
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557,
    -0.1382, 0.0542, 0.2813, 0.0891, 0.1570, -0.0098, 0.0375, -0.1825,
    -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
    -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230,
    -0.0313, -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.0520, 0.3748,
    0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
)  # fmt: skip
WAN22_LATENTS_STD = (
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013,
    0.8158, 1.0344, 0.5894, 1.0901, 0.6885, 0.6165, 0.8454, 0.4978,
    0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
    0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093,
    0.5709, 0.6065, 0.6415, 0.4944, 0.5726, 1.2042, 0.5458, 1.6887,
    0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
)  # fmt: skip


@dataclass(frozen=True)
class VAEConfig:
    base_dim: int = 96
    z_dim: int = 16
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attn_scales: tuple[float, ...] = ()  # Wan 2.1 uses none; kept so configs round-trip
    temporal_downsample: tuple[bool, ...] = (False, True, True)
    dropout: float = 0.0
    latents_mean: tuple[float, ...] = WAN21_LATENTS_MEAN
    latents_std: tuple[float, ...] = WAN21_LATENTS_STD
    in_channels: int = 3
    out_channels: int = 3
    # Width of the decoder when it differs from the encoder's (diffusers' `decoder_base_dim`): a wider decoder can be
    # trained on a fixed encoder's latents, so a DiT trained on them stays valid. None: base_dim (Wan 2.1).
    decoder_base_dim: int | None = None
    # Wan 2.2: residual levels (an average-pool shortcut around each encoder level, a duplicating one around each
    # decoder level, upsamplers that keep their width) and `patch_size`² pixels folded into channels before the encoder
    # and unfolded after the decoder. in_channels/out_channels stay the pixel channels (3).
    residual: bool = False
    patch_size: int = 1

    def __post_init__(self):
        for name in ("dim_mult", "attn_scales", "temporal_downsample", "latents_mean", "latents_std"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if len(self.dim_mult) < 2:
            raise ValueError(f"dim_mult needs at least 2 levels, got {self.dim_mult}")
        if len(self.temporal_downsample) != len(self.dim_mult) - 1:
            raise ValueError(
                f"temporal_downsample needs one flag per resampling level ({len(self.dim_mult) - 1}), "
                f"got {self.temporal_downsample}"
            )
        if self.attn_scales:
            raise ValueError(f"attn_scales={self.attn_scales}: only () is supported (Wan 2.1's VAE has no such blocks)")
        for name in ("latents_mean", "latents_std"):
            if len(getattr(self, name)) != self.z_dim:
                raise ValueError(f"{name} has {len(getattr(self, name))} values, expected z_dim={self.z_dim}")
        if self.decoder_base_dim is not None and self.decoder_base_dim <= 0:
            raise ValueError(f"decoder_base_dim must be positive or None, got {self.decoder_base_dim}")
        if any(s <= 0 for s in self.latents_std):
            raise ValueError(f"latents_std must be positive, got {self.latents_std}")
        if not isinstance(self.patch_size, int) or self.patch_size < 1:
            raise ValueError(f"patch_size must be an integer >= 1 (2 for Wan 2.2, 1 for Wan 2.1), "
                             f"got {self.patch_size}")
        if self.residual:
            self._check_residual_widths()

    def _check_residual_widths(self) -> None:
        """The shortcuts regroup channels: a level's input channels × its resampling factor must split evenly into its
        output channels (encoder) and the other way round (decoder)."""
        enc = [self.base_dim * m for m in (1, *self.dim_mult)]
        dec = [self.decoder_dim * m for m in (self.dim_mult[-1], *reversed(self.dim_mult))]
        last = len(self.dim_mult) - 1
        for level in range(len(self.dim_mult)):
            factor = 1 if level == last else 4 * (2 if self.temporal_downsample[level] else 1)
            if enc[level] * factor % enc[level + 1]:
                raise ValueError(f"residual encoder level {level}: {enc[level]} channels × {factor} do not split into "
                                 f"{enc[level + 1]} groups; choose base_dim/dim_mult so they do")
            up = 1 if level == last else 4 * (2 if self.temporal_downsample[last - 1 - level] else 1)
            if level < last and dec[level + 1] * up % dec[level]:
                raise ValueError(f"residual decoder level {level}: {dec[level + 1]} channels × {up} are not a multiple "
                                 f"of {dec[level]}; choose decoder_base_dim/dim_mult so they are")

    @property
    def decoder_dim(self) -> int:
        """The decoder's base width: decoder_base_dim, or base_dim when that is None."""
        return self.base_dim if self.decoder_base_dim is None else self.decoder_base_dim

    @property
    def pixel_channels(self) -> int:
        """Channels the encoder's first convolution sees: in_channels × patch_size² (12 for Wan 2.2)."""
        return self.in_channels * self.patch_size**2

    @property
    def spatial_compression(self) -> int:
        """Pixels per latent along height and width: 2 per resampling level, times the patch (8 for Wan 2.1, 16 for
        Wan 2.2). The pipeline reads this (and `temporal_compression`) for its shape rules."""
        return 2 ** (len(self.dim_mult) - 1) * self.patch_size

    @property
    def temporal_compression(self) -> int:
        return 2 ** sum(self.temporal_downsample)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "VAEConfig") -> "VAEConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown} for VAEConfig; known keys are {sorted(known)}")
        return cls(**data)


def _tiny(z_dim: int = 4) -> VAEConfig:
    return VAEConfig(
        base_dim=8, z_dim=z_dim, dim_mult=(1, 2, 2, 2), num_res_blocks=1,
        latents_mean=tuple(0.1 * i for i in range(z_dim)), latents_std=tuple(1.0 + 0.1 * i for i in range(z_dim)),
    )  # fmt: skip


def _tiny22(z_dim: int = 8) -> VAEConfig:
    return dataclasses.replace(
        _tiny(z_dim), residual=True, patch_size=2, dim_mult=(1, 2, 2, 2), decoder_base_dim=12,
    )  # fmt: skip


PRESETS: dict[str, VAEConfig] = {
    "wan2.1": VAEConfig(),
    # The VAE of Wan2.2-TI2V-5B: 4×16×16 compression into 48 channels, a decoder wider than its encoder.
    "wan2.2": VAEConfig(
        base_dim=160, decoder_base_dim=256, z_dim=48, residual=True, patch_size=2,
        latents_mean=WAN22_LATENTS_MEAN, latents_std=WAN22_LATENTS_STD,
    ),  # fmt: skip
    # Tests: a few thousand parameters, all code paths (3D and 2D resampling, shortcut convs, mid attention).
    "tiny": _tiny(),
    # Tests of the Wan 2.2 structure: residual levels, 2×2 patches, a wider decoder.
    "tiny-wan2.2": _tiny22(),
    # The embedded default model's VAE (configs/shapes/recipe.yaml), for the 64×64 procedural toy world: trainable on
    # CPU (8 channels at full resolution, where nearly all of the cost is); its latent statistics are set after training.
    "shapes": VAEConfig(
        base_dim=8, z_dim=16, dim_mult=(1, 2, 4, 4), num_res_blocks=1,
        latents_mean=(0.0,) * 16, latents_std=(1.0,) * 16,
    ),  # fmt: skip
}


def preset(name: str) -> VAEConfig:
    if name not in PRESETS:
        raise KeyError(f"unknown VAE preset {name!r}; known presets: {sorted(PRESETS)}")
    return PRESETS[name]
