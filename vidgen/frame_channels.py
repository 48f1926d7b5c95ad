"""Image-to-video as input channels (Wan 2.1 I2V / FLF2V, Wan 2.2 I2V-A14B): what the DiT is shown beside the noise.

The noise itself is never overwritten and every frame shares the step's timestep. On every step the DiT takes
[x, mask, cond] on the channel axis (`velocity.TextContexts.channels`):
- cond (1, C, F, h, w): the normalised VAE latents of the whole conditioning clip, the image as pixel frame 0 and zeros
  after it (first-last-frame: the last image as the last pixel frame) — the clip, not the image alone, so that the
  zeros are encoded as the VAE's causal cache sees them;
- mask (1, T, F, h, w), T the VAE's temporal compression: channel c of latent frame f is 1 where pixel frame
  T·(f − 1) + 1 + c (frame 0 for latent frame 0) is given, else 0; latent frame 0 stands for pixel frame 0 alone,
  so all its T channels are 1. The last image sets the last channel of the last latent frame.
Frame 0 of the result is generated, not copied: the model reproduces the image.
"""

from __future__ import annotations

import torch

from vidgen.conditioning import encode_context
from vidgen.pixels import image_to_tensor


def frame_mask(latent_frames: int, temporal: int, h: int, w: int, last: bool) -> torch.Tensor:
    """The mask channels (1, temporal, F, h, w): 1 on the given pixel frames (frame 0; with `last`, the final one)."""
    mask = torch.zeros(1, temporal, latent_frames, h, w)
    mask[:, :, 0] = 1  # latent frame 0 is pixel frame 0 alone: every sub-frame channel is it
    if last:
        mask[:, -1, -1] = 1  # the last pixel frame is the last sub-frame of the last latent frame
    return mask


def condition_pixels(first, last, num_frames: int, height: int, width: int) -> torch.Tensor:
    """The conditioning clip (1, 3, num_frames, H, W) in [-1, 1]: `first` as frame 0, `last` (or zeros) as the final
    frame, zeros between."""
    first = image_to_tensor(first, height, width)  # (1, 3, 1, H, W)
    clip = torch.zeros(1, 3, num_frames, height, width)
    clip[:, :, :1] = first
    if last is not None:
        clip[:, :, -1:] = image_to_tensor(last, height, width)
    return clip


def check_last_image_frames(num_frames: int, temporal: int) -> None:
    if num_frames < 1 + temporal:
        raise ValueError(f"last_image needs a clip of at least {1 + temporal} frames (its own latent frame), "
                         f"got num_frames={num_frames}")


def frame_channels(vae, first, last, num_frames: int, height: int, width: int, temporal: int) -> torch.Tensor:
    """[mask, cond] (1, temporal + C, F, h, w), float32: the extra input channels of an image-to-video model."""
    if last is not None:
        check_last_image_frames(num_frames, temporal)
    cond = encode_context(vae, condition_pixels(first, last, num_frames, height, width))  # (1, C, F, h, w)
    _, _, f, h, w = cond.shape
    mask = frame_mask(f, temporal, h, w, last is not None).to(cond.device)
    return torch.cat([mask, cond], dim=1)
