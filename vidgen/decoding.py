"""The one streaming decode: normalised latents → frames (B, t, H, W, 3) in [0, 1], one latent frame at a time.

`StreamDecoder` holds one causal VAE decode stream and its temporal cache as an explicit object (`cache`), so a
stream can be fed in any number of calls (feeding a window in pieces equals feeding it at once), saved between
segments of a long video, and resumed. The pipeline, long video and training previews all decode through it.
"""

from __future__ import annotations

from typing import Iterator

import torch

from vidgen.pixels import to_unit


class StreamDecoder:
    """A causal VAE decode stream: latent chunks (B, C, m, h, w) → per latent frame, float32 (B, t, H, W, 3) in
    [0, 1] (t = 1 for latent frame 0 of the stream, 4 after). `cache`: the stream's per-tile temporal caches (a dict
    that `StreamDecoder(vae, cache=...)` takes back); memory stays flat however long the stream."""

    def __init__(self, vae, tiling=None, cache: dict | None = None):
        from causal_vae.tiling import TiledStep

        self.vae = vae
        self._step = TiledStep.for_decode(vae, tiling, caches=cache)

    @property
    def cache(self) -> dict:
        return self._step.caches

    @torch.no_grad()
    def __call__(self, latents: torch.Tensor) -> Iterator[torch.Tensor]:
        for j in range(latents.shape[2]):
            z = self.vae.denormalize(latents[:, :, j:j + 1].to(self.vae.device, self.vae.dtype))
            yield to_unit(self._step(z)).permute(0, 2, 3, 4, 1)  # (B, 3, t, H, W) in [-1, 1] → (B, t, H, W, 3)
