"""Wan 2.2's additions to the causal VAE: pixel patches folded into channels, and residual levels.

A residual encoder level adds to its output a parameter-free shortcut of its input: the input's resampling windows
(2×2 pixels, and 2 frames where the level halves time) are stacked into channels and averaged in groups down to the
output width. A residual decoder level adds the converse: each input channel repeated and spread over the 2×2 pixels
(and 2 frames) it becomes. Both are causal in time and stream like the rest of the network: the average pairs frames
(2j-1, 2j) behind a zero frame before frame 0, so frame 0 alone makes output frame 0 and pair j completes with input
frame 2j, exactly when the main path's temporal downsample emits frame j; the duplicate drops the copy that would
precede frame 0, as the main path's temporal upsample turns frame 0 into one frame.
"""

from __future__ import annotations

import torch
from einops import rearrange, reduce
from torch import nn

from causal_vae.config import VAEConfig
from causal_vae.layers import Downsample, ResidualBlock, States, Upsample


def patchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, t, H, W) -> (B, C·patch², t, H/patch, W/patch); channel c·p² + q·p + r holds pixel row r, column q of
    each patch (the column offset before the row offset: the checkpoints' channel order)."""
    if patch == 1:
        return x
    return rearrange(x, "b c t (h r) (w q) -> b (c q r) t h w", r=patch, q=patch)


def unpatchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """Inverse of `patchify`: (B, C·patch², t, h, w) -> (B, C, t, h·patch, w·patch)."""
    if patch == 1:
        return x
    return rearrange(x, "b (c q r) t h w -> b c t (h r) (w q)", r=patch, q=patch)


class AverageDown(nn.Module):
    """The shortcut of a residual encoder level: (B, Ci, t, H, W) -> (B, Co, t', H/s, W/s), s = 2 if `spatial` else 1.

    Each resampling window (frames × s × s pixels of one channel) is stacked into channels, (c, frame, row, column)
    in that order, and each run of `group` consecutive stacked channels is averaged into one output channel. With
    `temporal`, the slot keeps the input frame waiting for its partner (a zero frame before frame 0).
    """

    def __init__(self, in_dim: int, out_dim: int, temporal: bool, spatial: bool):
        super().__init__()
        self.ft, self.fs = (2 if temporal else 1), (2 if spatial else 1)
        self.group = in_dim * self.ft * self.fs**2 // out_dim
        if temporal:
            self.slot = -1

    def forward(self, x: torch.Tensor, states: States) -> torch.Tensor:
        if self.ft == 2:
            waiting = states[self.slot]
            if waiting is None:  # frame 0 pairs with a zero frame before it
                waiting = x.new_zeros(*x.shape[:2], 1, *x.shape[3:])
            seq = torch.cat([waiting, x], dim=2)
            pairs = seq.shape[2] // 2
            states[self.slot] = seq[:, :, 2 * pairs :].clone()  # (B, Ci, 0 or 1, H, W)
            x = seq[:, :, : 2 * pairs]
        if self.ft * self.fs == 1 and self.group == 1:
            return x
        y = rearrange(x, "b c (t ft) (h p) (w q) -> b (c ft p q) t h w", ft=self.ft, p=self.fs, q=self.fs)
        return reduce(y, "b (o g) t h w -> b o t h w", "mean", g=self.group)


class DuplicateUp(nn.Module):
    """The shortcut of a residual decoder level: (B, Ci, t, h, w) -> (B, Co, t', 2h, 2w), t' = 2t (or 2t - 1 from the
    first frame of a stream) with `temporal`, else t.

    Every input channel is repeated `repeats` times; the repeated channels, read as (c, frame, row, column), fill the
    2 (or 1) frames × 2×2 pixels each input position becomes.
    """

    def __init__(self, in_dim: int, out_dim: int, temporal: bool):
        super().__init__()
        self.ft = 2 if temporal else 1
        self.repeats = out_dim * self.ft * 4 // in_dim

    def forward(self, x: torch.Tensor, first: bool) -> torch.Tensor:
        """`first`: x starts with the stream's frame 0, which becomes one frame (its earlier copy is dropped)."""
        y = x.repeat_interleave(self.repeats, dim=1)  # (B, Co·ft·4, t, h, w)
        y = rearrange(y, "b (c ft p q) t h w -> b c (t ft) (h p) (w q)", ft=self.ft, p=2, q=2)
        return y[:, :, self.ft - 1 :] if first else y


class ResidualDownBlock(nn.Module):
    """One residual encoder level: num_res_blocks residual blocks and an optional downsample, plus `AverageDown`.

    (B, Ci, t, H, W) -> (B, Co, t', H', W'); `downsample` is "3d" (space and time), "2d" (space) or None.
    """

    def __init__(self, in_dim: int, out_dim: int, cfg: VAEConfig, downsample: str | None):
        super().__init__()
        self.avg_shortcut = AverageDown(in_dim, out_dim, temporal=downsample == "3d", spatial=downsample is not None)
        self.resnets = nn.ModuleList(
            [ResidualBlock(in_dim if i == 0 else out_dim, out_dim, cfg.dropout) for i in range(cfg.num_res_blocks)]
        )
        self.downsampler = Downsample(out_dim, temporal=downsample == "3d") if downsample else None

    def forward(self, x: torch.Tensor, states: States) -> torch.Tensor:
        shortcut = self.avg_shortcut(x, states)  # first: it is smaller than x, which can then be freed
        for block in self.resnets:
            x = block(x, states)
        if self.downsampler is not None:
            x = self.downsampler(x, states)
        return x + shortcut if torch.is_grad_enabled() else x.add_(shortcut)


class ResidualUpBlock(nn.Module):
    """One residual decoder level: num_res_blocks + 1 residual blocks and an optional upsample keeping the width,
    plus `DuplicateUp` around them when upsampling. (B, Ci, t, h, w) -> (B, Co, t', h', w')."""

    def __init__(self, in_dim: int, out_dim: int, cfg: VAEConfig, upsample: str | None):
        super().__init__()
        temporal = upsample == "3d"
        self.avg_shortcut = DuplicateUp(in_dim, out_dim, temporal) if upsample else None
        self.resnets = nn.ModuleList(
            [ResidualBlock(in_dim if i == 0 else out_dim, out_dim, cfg.dropout) for i in range(cfg.num_res_blocks + 1)]
        )
        self.upsampler = Upsample(out_dim, temporal, out_dim=out_dim) if upsample else None

    def forward(self, x: torch.Tensor, states: States) -> torch.Tensor:
        inputs = x
        # The stream's first frame: the temporal upsampler has not run yet (its slot is still empty).
        first = self.upsampler is not None and self.upsampler.temporal and states[self.upsampler.time_conv.slot] is None
        for block in self.resnets:
            x = block(x, states)
        if self.upsampler is None:
            return x
        x = self.upsampler(x, states)
        shortcut = self.avg_shortcut(inputs, first)
        return x + shortcut if torch.is_grad_enabled() else x.add_(shortcut)
