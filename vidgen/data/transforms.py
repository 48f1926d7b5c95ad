"""Clip sampling and resize + crop: uint8 frames from a file → a float clip (3, T, H, W) in [-1, 1]."""

from __future__ import annotations

import random

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from vidgen.data.media import MediaInfo
from vidgen.data.buckets import frame_stride
from vidgen.pixels import uint8_to_signed


def clip_indices(info: MediaInfo, frames: int, fps: float | None, rng: random.Random) -> list[int]:
    """`frames` source indices spaced at the target fps, from a random start that keeps the clip inside the file."""
    if info.num_frames == 1 or frames == 1:
        return [rng.randrange(info.num_frames)] * frames if frames == 1 else [0] * frames
    stride = frame_stride(info, fps)
    span = (frames - 1) * stride
    start = rng.uniform(0, max(0.0, info.num_frames - 1 - span))
    return [min(info.num_frames - 1, int(round(start + k * stride))) for k in range(frames)]


def resize_crop(frames: np.ndarray, height: int, width: int, rng: random.Random, random_crop: bool) -> torch.Tensor:
    """uint8 (T, h, w, 3) → float (3, T, height, width) in [-1, 1]: scale to cover the target, then crop."""
    x = rearrange(uint8_to_signed(frames)[0], "c t h w -> t c h w")  # (T, 3, h, w) in [-1, 1]
    h, w = x.shape[-2:]
    scale = max(height / h, width / w)
    nh, nw = max(height, round(h * scale)), max(width, round(w * scale))
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=nh < h or nw < w)
    top = rng.randint(0, nh - height) if random_crop else (nh - height) // 2
    left = rng.randint(0, nw - width) if random_crop else (nw - width) // 2
    x = x[:, :, top:top + height, left:left + width].clamp(-1.0, 1.0)
    return rearrange(x, "t c h w -> c t h w").contiguous()
