"""VAEConfig: the frozen description of a causal 3D VAE, and its named presets.

The architecture is Wan 2.1's VAE: `len(dim_mult) - 1` resampling levels, each halving height and width (8× in total for
the usual 4 levels) and, where `temporal_downsample` says so, halving time after the first frame (4×).
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

    @property
    def decoder_dim(self) -> int:
        """The decoder's base width: decoder_base_dim, or base_dim when that is None."""
        return self.base_dim if self.decoder_base_dim is None else self.decoder_base_dim

    @property
    def spatial_compression(self) -> int:
        return 2 ** (len(self.dim_mult) - 1)

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


PRESETS: dict[str, VAEConfig] = {
    "wan2.1": VAEConfig(),
    # Tests: a few thousand parameters, all code paths (3D and 2D resampling, shortcut convs, mid attention).
    "tiny": _tiny(),
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
