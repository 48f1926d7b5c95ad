"""DiT configuration: a frozen dataclass and its named presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from vidgen.config_io import from_dict


@dataclass(frozen=True)
class DiTConfig:
    dim: int
    ffn_dim: int
    num_heads: int
    num_layers: int
    in_dim: int = 16  # latent channels in
    out_dim: int = 16  # velocity channels out
    text_dim: int = 4096  # width of the text encoder's hidden states (umT5-XXL for Wan)
    freq_dim: int = 256  # sinusoidal timestep embedding width
    patch_size: tuple[int, int, int] = (1, 2, 2)  # (t, h, w)
    eps: float = 1e-6
    qk_norm: bool = True  # RMS norm of q and k over the full width, before splitting heads
    cross_attn_norm: bool = True  # affine LayerNorm in front of the text cross-attention
    text_len: int = 512  # tokens the text context is padded to (by the pipeline; the DiT takes any length)
    rope_theta: float = 10000.0
    # Image conditioning through CLIP tokens (Wan 2.1 I2V / FLF2V): the width of the image tokens, None for models
    # without it; image_tokens: the length of their learned position embedding (FLF2V: 2 images x 257), else None.
    image_dim: int | None = None
    image_tokens: int | None = None

    def __post_init__(self):
        if self.dim % self.num_heads:
            raise ValueError(f"dim {self.dim} is not divisible by num_heads {self.num_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head dimension {self.head_dim} must be even for RoPE")
        if len(self.patch_size) != 3 or min(self.patch_size) < 1:
            raise ValueError(f"patch_size must be three positive ints (t, h, w), got {self.patch_size}")
        if self.image_tokens is not None and self.image_dim is None:
            raise ValueError(f"image_tokens={self.image_tokens} needs image_dim (the width of the image tokens)")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @classmethod
    def preset(cls, name: str) -> "DiTConfig":
        if name not in PRESETS:
            raise ValueError(f"unknown DiT preset {name!r}; known presets: {sorted(PRESETS)}")
        return PRESETS[name]

    @classmethod
    def load(cls, source: str | Path | Mapping[str, Any]) -> "DiTConfig":
        """From a YAML/JSON file or mapping; `preset: NAME` starts from a preset and the other keys override it."""
        from vidgen.config_io import read_mapping

        data = read_mapping(source)
        base = data.pop("preset", None)
        if base is not None:
            data = {**dataclasses.asdict(cls.preset(base)), **data}
        return from_dict(cls, data, where=str(source) if not isinstance(source, Mapping) else None)


PRESETS: dict[str, DiTConfig] = {
    # Published Wan 2.1 text-to-video models.
    "wan2.1-t2v-1.3b": DiTConfig(dim=1536, ffn_dim=8960, num_heads=12, num_layers=30),
    "wan2.1-t2v-14b": DiTConfig(dim=5120, ffn_dim=13824, num_heads=40, num_layers=40),
    # Image-to-video: 16 noise + 4 mask + 16 condition-latent channels in, CLIP ViT-H tokens (1280 wide) beside the
    # text; first-last-frame adds a position embedding over the two images' 2 x 257 tokens.
    "wan2.1-i2v-14b": DiTConfig(dim=5120, ffn_dim=13824, num_heads=40, num_layers=40, in_dim=36, image_dim=1280),
    "wan2.1-flf2v-14b": DiTConfig(dim=5120, ffn_dim=13824, num_heads=40, num_layers=40, in_dim=36, image_dim=1280,
                                  image_tokens=514),
    # Wan 2.2: TI2V-5B on the 48-channel Wan 2.2 VAE (16x16 spatial compression); each A14B expert is the 14B shape
    # (the I2V experts take 36 channels and no CLIP tokens).
    "wan2.2-ti2v-5b": DiTConfig(dim=3072, ffn_dim=14336, num_heads=24, num_layers=30, in_dim=48, out_dim=48),
    "wan2.2-t2v-a14b": DiTConfig(dim=5120, ffn_dim=13824, num_heads=40, num_layers=40),
    "wan2.2-i2v-a14b": DiTConfig(dim=5120, ffn_dim=13824, num_heads=40, num_layers=40, in_dim=36),
    # The embedded default model: a 64x64 procedural world on 2 CPU cores. The latent is 16x8x8 with 5 frames, so a
    # clip is only 5*4*4 = 80 tokens; width 192 (6 heads of 32, RoPE split 12/10/10) and 6 layers give ~4M parameters,
    # enough for simple shapes and motion and trainable in a CPU-hour (configs/shapes/recipe.yaml). text_dim 128 is
    # the width of the world's text encoder (vidgen.shapes.text). Its captions are ~12 tokens, so the context is
    # padded to 16 tokens, not 512.
    "shapes": DiTConfig(
        dim=192, ffn_dim=768, num_heads=6, num_layers=6, text_dim=128, freq_dim=128, text_len=16
    ),
    # Unit tests: every code path, milliseconds per forward.
    "tiny": DiTConfig(
        dim=48, ffn_dim=96, num_heads=4, num_layers=2, in_dim=4, out_dim=4, text_dim=24, freq_dim=32, text_len=16
    ),
}
