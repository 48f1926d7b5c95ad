"""Pure-PyTorch references for the DiT's fused element-wise ops: RMS norm, adaLN modulation, 3D RoPE.

These are the definitions; any faster kernel must match them (see tests/test_kernels.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    """x / sqrt(mean(x², -1) + eps) · weight over the last axis, statistics in fp32. Shape and dtype of x."""
    return F.rms_norm(x, x.shape[-1:], weight, eps)


def rms_norm_reference(x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    xf = x.float()
    out = (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)
    return out if weight is None else out * weight


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: x·(1 + scale) + shift, shift/scale broadcast against x `(..., D)`."""
    return x * (1 + scale) + shift


def rope_angles(head_dim: int, grid: tuple[int, int, int], theta: float = 10000.0, device=None) -> torch.Tensor:
    """Rotation angles `(f·h·w, head_dim/2)` of 3D RoPE over a (frames, height, width) token grid, in fp64.

    The head dimension is split as Wan does: height and width get 2·(head_dim // 6) channels each, time the rest; each
    axis uses the 1D frequencies theta^(-2i/n) of its own n channels. Tokens are ordered (f h w), row-major.
    """
    if head_dim % 2:
        raise ValueError(f"3D RoPE needs an even head dimension, got {head_dim}")
    hw_dim = 2 * (head_dim // 6)
    t_dim = head_dim - 2 * hw_dim
    f, h, w = grid
    parts = []
    for n, positions, shape in ((t_dim, f, (f, 1, 1)), (hw_dim, h, (1, h, 1)), (hw_dim, w, (1, 1, w))):
        freqs = theta ** (-torch.arange(0, n, 2, dtype=torch.float64, device=device) / n)  # (n/2,)
        angles = torch.outer(torch.arange(positions, dtype=torch.float64, device=device), freqs)  # (positions, n/2)
        parts.append(angles.reshape(*shape, -1).expand(f, h, w, -1))
    return torch.cat(parts, dim=-1).reshape(f * h * w, head_dim // 2)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved channel pairs (x[2i], x[2i+1]) of x `(B, S, H, D)` or `(S, H, D)` by angles whose cos/sin
    are `(S, D/2)`. Computed in x's dtype."""
    pairs = x.unflatten(-1, (-1, 2))  # (..., S, H, D/2, 2)
    x1, x2 = pairs.unbind(-1)
    c, s = cos[:, None, :].to(x.dtype), sin[:, None, :].to(x.dtype)  # (S, 1, D/2), broadcast over heads
    return torch.stack((x1 * c - x2 * s, x1 * s + x2 * c), dim=-1).flatten(-2)


def apply_rope_reference(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """The same rotation through complex multiplication in fp64 (how Wan writes it)."""
    z = torch.view_as_complex(x.double().unflatten(-1, (-1, 2)).contiguous())  # (..., S, H, D/2)
    rot = torch.complex(cos.double(), sin.double())[:, None, :]
    return torch.view_as_real(z * rot).flatten(-2).to(x.dtype)
