"""Building blocks of the causal VAE: RMS norm, causal 3D conv, residual block, per-frame attention, resampling.

Every block maps a chunk of frames `(B, C, t, H, W)` to the matching chunk of output frames, reading and writing its
temporal slot in `states` (the working list of a `TemporalCache`). Processing a video in one chunk or in many gives
the same result: each block is a causal function of the frame sequence it has seen.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

States = list  # list[Tensor | None], one entry per slot; see cache.py


# oneDNN wins clearly on large frames (measured 2-5× at 32-128 px with 32-128 channels) and loses on tiny ones, where
# compiling a kernel for every new shape costs more than the convolution.
FAST_CONV_MIN_PIXELS = 32 * 32
FAST_CONV_MIN_CHANNELS = 16


def use_fast_cpu_conv(x: torch.Tensor, conv: nn.Module) -> bool:
    """Whether to call oneDNN's convolution directly: fp32 CPU inference on large enough frames.

    PyTorch's dispatcher sends batch-1 3D convs with N·C·T·H ≤ 20480 to its im2col fallback, which is several times
    slower than oneDNN for the short chunks (1-6 frames) a causal stream feeds every layer. Training keeps the stock
    path (and its autograd formulas).
    """
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.is_grad_enabled()
        and x.shape[-1] * x.shape[-2] >= FAST_CONV_MIN_PIXELS
        and conv.in_channels >= FAST_CONV_MIN_CHANNELS
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
    )


def conv3d(conv: nn.Conv3d, x: torch.Tensor, fast: bool | None = None) -> torch.Tensor:
    """conv.forward(x), via oneDNN directly where `use_fast_cpu_conv` says so (same numbers to fp32 rounding)."""
    if use_fast_cpu_conv(x, conv) if fast is None else fast:
        return torch.ops.aten.mkldnn_convolution(
            x.contiguous(), conv.weight, conv.bias, conv.padding, conv.stride, conv.dilation, conv.groups
        )
    return F.conv3d(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)


class RMSNorm(nn.Module):
    """x / ||x||_channels * sqrt(C) * gamma, over the channel axis 1. Input (B, C, ...)."""

    def __init__(self, dim: int, images: bool = False):
        super().__init__()
        self.scale = dim**0.5
        # The (C, 1, 1[, 1]) shape is part of the checkpoint format.
        self.gamma = nn.Parameter(torch.ones(dim, 1, 1) if images else torch.ones(dim, 1, 1, 1))

    def forward(self, x: torch.Tensor, silu: bool = False) -> torch.Tensor:
        """Normalise, and with `silu` apply SiLU after it (fused, in place, when no gradient is recorded)."""
        # Low-precision inputs are normalised in fp32: the sum of squares over hundreds of channels loses too much.
        x32 = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        if torch.is_grad_enabled():
            y = (x32 * _inverse_channel_norm(x32)).to(x.dtype) * self.scale * self.gamma
            return F.silu(y) if silu else y
        # Inference: the squares are freed before y exists, so the peak is x and y (the norm is a (B, 1, ...) tensor).
        y = x32 * _inverse_channel_norm(x32)
        y = y.to(x.dtype) if y.dtype != x.dtype else y
        y.mul_(self.gamma * self.scale)
        return F.silu(y, inplace=True) if silu else y


def _inverse_channel_norm(x: torch.Tensor) -> torch.Tensor:
    """1 / max(||x||₂ over axis 1, 1e-12), (B, 1, ...): what F.normalize divides by. Written as a sum of squares,
    not torch.linalg.vector_norm(dim=1), which on CPU is ~20x slower over a strided axis (docs/benchmarks.md)."""
    return x.square().sum(dim=1, keepdim=True).clamp_min(1e-24).rsqrt()


class CausalConv3d(nn.Conv3d):
    """A 3D convolution that sees only the present and past in time: (B, Ci, t, H, W) -> (B, Co, t, H, W).

    Spatially it is padded on both sides ("same"); in time it is fed the last `k_t - 1` frames of its past input
    (zeros before the video starts), kept in its cache slot, so no frame ever sees a later one.
    """

    def __init__(self, in_dim: int, out_dim: int, kernel: int | tuple[int, int, int]):
        kt, kh, kw = (kernel,) * 3 if isinstance(kernel, int) else kernel
        super().__init__(in_dim, out_dim, (kt, kh, kw), padding=(0, kh // 2, kw // 2))
        self.history = kt - 1
        if self.history:
            self.slot = -1  # assigned by cache.assign_slots

    def forward(self, x: torch.Tensor, states: States | None = None) -> torch.Tensor:
        if not self.history:
            return conv3d(self, x)
        past = states[self.slot]
        if past is None:
            past = x.new_zeros(*x.shape[:2], self.history, *x.shape[3:])
        x = torch.cat([past, x], dim=2)  # (B, Ci, history + t, H, W)
        # Clone so the cache holds only its frames, not a view keeping the whole chunk alive.
        states[self.slot] = x[:, :, -self.history :].clone()
        return conv3d(self, x)


class ResidualBlock(nn.Module):
    """norm-SiLU-conv twice, plus a (1×1×1 conv) shortcut: (B, Ci, t, H, W) -> (B, Co, t, H, W)."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = RMSNorm(in_dim)
        self.conv1 = CausalConv3d(in_dim, out_dim, 3)
        self.norm2 = RMSNorm(out_dim)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = CausalConv3d(out_dim, out_dim, 3)
        self.conv_shortcut = CausalConv3d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x: torch.Tensor, states: States) -> torch.Tensor:
        h = self.conv1(self.norm1(x, silu=True), states)
        h = self.conv2(self.dropout(self.norm2(h, silu=True)), states)
        shortcut = self.conv_shortcut(x)
        return h + shortcut if torch.is_grad_enabled() else h.add_(shortcut)


class AttentionBlock(nn.Module):
    """Single-head self-attention over the pixels of each frame separately: (B, C, t, H, W) -> same."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = RMSNorm(dim, images=True)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor, states: States | None = None) -> torch.Tensor:
        b, c, t, h, w = x.shape
        y = rearrange(x, "b c t h w -> (b t) c h w")
        qkv = self.to_qkv(self.norm(y))
        q, k, v = rearrange(qkv, "n (three c) h w -> three n 1 (h w) c", three=3)
        y = F.scaled_dot_product_attention(q, k, v)  # (b t, 1, h w, c)
        y = self.proj(rearrange(y, "n 1 (h w) c -> n c h w", h=h, w=w))
        return x + rearrange(y, "(b t) c h w -> b c t h w", b=b, t=t)


class MidBlock(nn.Module):
    """residual, attention, residual at the lowest resolution: (B, C, t, h, w) -> same."""

    def __init__(self, dim: int, dropout: float = 0.0):
        super().__init__()
        self.resnets = nn.ModuleList([ResidualBlock(dim, dim, dropout), ResidualBlock(dim, dim, dropout)])
        self.attentions = nn.ModuleList([AttentionBlock(dim)])

    def forward(self, x: torch.Tensor, states: States) -> torch.Tensor:
        x = self.resnets[0](x, states)
        x = self.attentions[0](x)
        return self.resnets[1](x, states)


def _per_frame(fn, x: torch.Tensor) -> torch.Tensor:
    """Apply a 2D module to every frame: (B, C, t, H, W) -> (B, C', t, H', W')."""
    b = x.shape[0]
    y = fn(rearrange(x, "b c t h w -> (b t) c h w"))
    return rearrange(y, "(b t) c h w -> b c t h w", b=b)


class Downsample(nn.Module):
    """Halve H and W (pad right/bottom, 3×3 stride-2 conv); with `temporal`, also halve time after the first frame.

    (B, C, t, H, W) -> (B, C, t', H/2, W/2). In time, output frame 0 is input frame 0 and output frame j ≥ 1 is a
    3-tap stride-2 conv of input frames 2j-2, 2j-1, 2j, so 1 + 2k frames become 1 + k. The slot keeps the input frames
    from the start of the next window (None before frame 0).
    """

    def __init__(self, dim: int, temporal: bool):
        super().__init__()
        self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, 3, stride=2))
        self.temporal = temporal
        if temporal:
            self.time_conv = nn.Conv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1))
            self.slot = -1

    def forward(self, x: torch.Tensor, states: States) -> torch.Tensor:
        x = _per_frame(self.resample, x)
        if not self.temporal:
            return x
        tail = states[self.slot]
        first = x[:, :, :1] if tail is None else None  # frame 0 passes through: the anchor is never mixed
        seq = x if tail is None else torch.cat([tail, x], dim=2)
        n = (seq.shape[2] - 1) // 2  # complete windows
        states[self.slot] = seq[:, :, 2 * n :].clone()
        parts = [first] if first is not None else []
        if n > 0:
            parts.append(conv3d(self.time_conv, seq[:, :, : 2 * n + 1]))
        if not parts:
            return x[:, :, :0]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)


class Upsample(nn.Module):
    """Double H and W (nearest, 3×3 conv to `out_dim` channels, `dim // 2` unless given); with `temporal`, double time
    after the first frame.

    (B, C, t, H, W) -> (B, out_dim, t', 2H, 2W). In time, frame 0 stays one frame; every later frame becomes two, made
    by a causal 3-tap conv to 2C channels over the frames after frame 0 (zeros before frame 1), so 1 + k -> 1 + 2k.
    """

    def __init__(self, dim: int, temporal: bool, out_dim: int | None = None):
        super().__init__()
        out_dim = dim // 2 if out_dim is None else out_dim
        self.resample = nn.Sequential(
            nn.Upsample(scale_factor=2.0, mode="nearest-exact"), nn.Conv2d(dim, out_dim, 3, padding=1)
        )
        self.temporal = temporal
        if temporal:
            self.time_conv = CausalConv3d(dim, dim * 2, (3, 1, 1))

    def forward(self, x: torch.Tensor, states: States) -> torch.Tensor:
        if self.temporal:
            first = None
            if states[self.time_conv.slot] is None:  # frame 0: not doubled, and not part of the conv's past
                first, x = x[:, :, :1], x[:, :, 1:]
                states[self.time_conv.slot] = first.new_zeros(*first.shape[:2], 2, *first.shape[3:])
            if x.shape[2] > 0:
                y = self.time_conv(x, states)  # (B, 2C, t, H, W)
                x = rearrange(y, "b (two c) t h w -> b c (t two) h w", two=2)
                x = x if first is None else torch.cat([first, x], dim=2)
            else:
                x = first
        return _per_frame(self.resample, x)
