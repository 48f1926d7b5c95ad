"""Spatial tiling: run the VAE on overlapping square tiles of large frames and blend the seams linearly.

Each tile is its own causal stream with its own TemporalCache, so tiling composes with streaming: every chunk of frames
is cut into the same tiles, each tile advances its cache, and the tile outputs of that chunk are blended into one frame.
Peak activation memory is that of one tile; the caches of all tiles together are about one frame's worth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from causal_vae.cache import TemporalCache


@dataclass(frozen=True)
class Tiling:
    """Square tiles of `tile` pixels, neighbours sharing `overlap` pixels; both multiples of 8 (in pixel space), and of
    the VAE's spatial compression (16 for Wan 2.2) where it is used."""

    tile: int = 256
    overlap: int = 64

    def __post_init__(self):
        if self.tile <= 0 or self.tile % 8 or self.overlap % 8 or not 0 <= self.overlap < self.tile:
            raise ValueError(
                f"Tiling(tile={self.tile}, overlap={self.overlap}): expected multiples of 8 with 0 <= overlap < tile"
            )


def tile_starts(length: int, size: int, overlap: int) -> list[int]:
    """Start offsets of tiles of `size` covering [0, length); the last one is pulled back to end exactly at `length`."""
    if length <= size:
        return [0]
    stride = size - overlap
    starts = list(range(0, length - size, stride)) + [length - size]
    return sorted(set(starts))


def blend_ramp(size: int, overlap: int, lead: bool, trail: bool, like: torch.Tensor) -> torch.Tensor:
    """1D blend weights (size,): rising over the first `overlap` entries if `lead`, falling over the last if `trail`."""
    w = torch.ones(size, dtype=torch.float32, device=like.device)
    if overlap > 0:
        up = (torch.arange(overlap, dtype=torch.float32, device=like.device) + 0.5) / overlap
        if lead:
            w[:overlap] = torch.minimum(w[:overlap], up)
        if trail:
            w[-overlap:] = torch.minimum(w[-overlap:], up.flip(0))
    return w


def _check_fits(tiling: Tiling | None, s: int) -> int:
    """A tile and its overlap must be whole latent pixels: multiples of the VAE's spatial compression `s` (returned)."""
    if tiling is not None and (tiling.tile % s or tiling.overlap % s):
        raise ValueError(f"Tiling(tile={tiling.tile}, overlap={tiling.overlap}): this VAE compresses {s}× in space, "
                         f"so both must be multiples of {s}")
    return s


class TiledStep:
    """A stateful stepper over one stream: `step(chunk) -> output chunk`, holding the cache of each tile.

    `step_fn(x, cache) -> (y, cache)` is `CausalVAE.encode_step` or `decode_step`; `scale` is output pixels per input
    pixel (1/s for encoding, s for decoding, s the VAE's spatial compression). With `tiling=None`, or frames no
    larger than one tile, it is the plain step with a single cache.
    """

    def __init__(self, step_fn: Callable, empty_cache: Callable[[], TemporalCache], tiling: Tiling | None, scale: float,
                 in_unit: int, caches: dict[tuple[int, int], TemporalCache] | None = None):  # fmt: skip
        self.step_fn, self.empty_cache, self.tiling, self.scale = step_fn, empty_cache, tiling, scale
        self.in_unit = in_unit  # input pixels per tiling pixel (1 for pixels, 1/8 via division for latents)
        # per tile (row, column): its temporal cache; given back to continue a stream that was saved
        self.caches: dict[tuple[int, int], TemporalCache] = {} if caches is None else caches

    @classmethod
    def for_encode(cls, vae, tiling: Tiling | None) -> "TiledStep":
        s = _check_fits(tiling, vae.config.spatial_compression)
        return cls(vae.encode_step, vae.empty_encoder_cache, tiling, 1 / s, 1)

    @classmethod
    def for_decode(cls, vae, tiling: Tiling | None, caches: dict | None = None) -> "TiledStep":
        s = _check_fits(tiling, vae.config.spatial_compression)
        return cls(vae.decode_step, vae.empty_decoder_cache, tiling, s, s, caches)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, t, H, W) -> (B, C', t', H·scale, W·scale)."""
        H, W = x.shape[-2:]
        size = overlap = None
        if self.tiling is not None:
            size, overlap = self.tiling.tile // self.in_unit, self.tiling.overlap // self.in_unit
        if size is None or (H <= size and W <= size):
            y, self.caches[(0, 0)] = self.step_fn(x, self.caches.get((0, 0)) or self.empty_cache())
            return y
        out = weight = None
        rows, cols = tile_starts(H, size, overlap), tile_starts(W, size, overlap)
        for i, r in enumerate(rows):
            for j, c in enumerate(cols):
                tile = x[..., r : r + size, c : c + size]
                y, self.caches[(r, c)] = self.step_fn(tile, self.caches.get((r, c)) or self.empty_cache())
                if out is None:
                    shape = (*y.shape[:3], round(H * self.scale), round(W * self.scale))
                    out = y.new_zeros(shape, dtype=torch.float32)
                    weight = torch.zeros(shape[-2:], dtype=torch.float32, device=y.device)
                oh, ow = y.shape[-2:]
                ov = round(overlap * self.scale)
                w = torch.outer(
                    blend_ramp(oh, ov, i > 0, i < len(rows) - 1, y), blend_ramp(ow, ov, j > 0, j < len(cols) - 1, y)
                )  # (oh, ow)
                R, C = round(r * self.scale), round(c * self.scale)
                out[..., R : R + oh, C : C + ow] += y.float() * w
                weight[R : R + oh, C : C + ow] += w
        return (out / weight).to(x.dtype)
