"""VAE decoding split over ranks by spatial tiles, streamed frame by frame.

The tiles of `causal_vae.tiling` are independent causal streams (each with its own temporal cache), so they are the
natural unit to hand out: rank r decodes tiles r, r+P, r+2P, … of every latent frame, blends them into a zeroed frame,
and one all-reduce per latent frame sums the ranks' partial frames. Each rank holds one tile's activations, its own
tiles' caches and one output chunk, so memory stays bounded however long the clip is. The result is the single-process
`vae.decode(z, tiling=tiling)` up to the order of the float additions in the blend.

Time is not split: the decoder is causal, frame k needs the cache that frames 0..k-1 leave behind, so time chunks on
different ranks would run one after the other (or approximately, with a warm-up overlap).
"""

from __future__ import annotations

from typing import Iterable, Iterator

import torch
import torch.distributed as dist

from causal_vae.tiling import Tiling, blend_ramp, tile_starts


def parallel_stream_decode(vae, parts: Iterable[torch.Tensor], tiling: Tiling, group=None) -> Iterator[torch.Tensor]:
    """Normalised latent chunks `(B, z_dim, m_i, h, w)` -> pixel chunks in [-1, 1] `(B, 3, t, 8h, 8w)`, one per latent
    frame (as `vae.stream_decode`), identical on every rank of `group` (None: the default group). Every rank passes
    the same latents. Frames that fit in one tile are decoded whole on every rank."""
    if not isinstance(tiling, Tiling):
        raise TypeError(f"parallel_stream_decode needs a causal_vae.tiling.Tiling to split work by, got {tiling!r}")
    rank, size = dist.get_rank(group), dist.get_world_size(group)
    s = vae.config.spatial_compression
    tile, overlap = tiling.tile // s, tiling.overlap // s  # in latent pixels
    caches: dict[tuple[int, int], object] = {}
    seen = 0
    for part in parts:
        z = vae.denormalize(part.to(vae.device, vae.dtype))
        h, w = z.shape[-2:]
        if h <= tile and w <= tile:  # one tile: nothing to split
            for j in range(z.shape[2]):
                y, caches[(0, 0)] = vae.decode_step(z[:, :, j : j + 1], caches.get((0, 0)) or vae.empty_decoder_cache())
                seen += 1
                yield y.clamp_(-1.0, 1.0)
            continue
        rows, cols = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
        tiles = [(i, r, k, c) for i, r in enumerate(rows) for k, c in enumerate(cols)]
        weight = torch.zeros(h * s, w * s, dtype=torch.float32, device=z.device)
        for i, r, k, c in tiles:  # the blend weights of every tile: cheap, so computed here rather than reduced
            oh, ow = min(tile, h - r) * s, min(tile, w - c) * s
            weight[r * s : r * s + oh, c * s : c * s + ow] += _blend(oh, ow, overlap * s, i, k, rows, cols, weight)
        for j in range(z.shape[2]):
            out = None
            for n, (i, r, k, c) in enumerate(tiles):
                if n % size != rank:
                    continue
                y, caches[(r, c)] = vae.decode_step(z[:, :, j : j + 1, r : r + tile, c : c + tile],
                                                    caches.get((r, c)) or vae.empty_decoder_cache())  # fmt: skip
                if out is None:
                    out = y.new_zeros((*y.shape[:3], h * s, w * s), dtype=torch.float32)
                oh, ow = y.shape[-2:]
                out[..., r * s : r * s + oh, c * s : c * s + ow] += y.float() * _blend(
                    oh, ow, overlap * s, i, k, rows, cols, y
                )
            if out is None:  # more ranks than tiles: contribute zeros of the right shape
                frames = 1 if seen == 0 else vae.config.temporal_compression
                out = torch.zeros(z.shape[0], 3, frames, h * s, w * s, dtype=torch.float32, device=z.device)
            dist.all_reduce(out, group=group)
            seen += 1
            yield (out / weight).to(z.dtype).clamp_(-1.0, 1.0)
    if seen == 0:
        raise ValueError("parallel_stream_decode got an empty stream; expected chunks of (B, z_dim, m, h, w)")


def _blend(oh: int, ow: int, overlap: int, i: int, k: int, rows: list, cols: list, like: torch.Tensor) -> torch.Tensor:
    """`(oh, ow)` weights of tile (i, k): ramps on the sides that overlap a neighbour, as `causal_vae.tiling` blends."""
    rows_w = blend_ramp(oh, overlap, i > 0, i < len(rows) - 1, like)
    cols_w = blend_ramp(ow, overlap, k > 0, k < len(cols) - 1, like)
    return torch.outer(rows_w, cols_w)


def parallel_decode(vae, z: torch.Tensor, tiling: Tiling, group=None) -> torch.Tensor:
    """Normalised latents `(B, z_dim, 1+k, h, w)` -> video `(B, 3, 1+4k, 8h, 8w)` in [-1, 1] on every rank."""
    with torch.no_grad():
        return torch.cat(list(parallel_stream_decode(vae, [z], tiling, group)), dim=2)
