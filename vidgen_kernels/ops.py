"""The DiT's fused ops and their pure-PyTorch references: linear maps, RMS norm, adaLN modulation, 3D RoPE.

The references are the definitions; any faster kernel must match them (see tests/test_kernels.py).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

HALF = (torch.bfloat16, torch.float16)


@functools.cache
@torch.compiler.assume_constant_result  # a fact of the machine: torch.compile takes it as a constant
def cpu_has_half_matmul() -> bool:
    """Whether oneDNN has native bf16 matmul on this CPU (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def upcast_on_cpu(x: torch.Tensor) -> torch.dtype | None:
    """The half dtype to round back to when an op on x should run in fp32 instead, else None.

    A CPU without native bf16/fp16 matmul units emulates them ~10x slower than an fp32 matmul (measured 4.8 ms vs
    0.5 ms for 80x192 @ 192x768 on AVX2). Products of half inputs are exact in fp32 and both paths accumulate in fp32,
    so computing in fp32 and rounding once gives the half-precision result up to the order of the sum.
    CPU autocast to a half dtype counts as half.
    """
    if x.device.type != "cpu":
        return None
    dtype = x.dtype
    if dtype not in HALF and torch.is_autocast_enabled("cpu"):
        dtype = torch.get_autocast_dtype("cpu")
    if dtype not in HALF or cpu_has_half_matmul():
        return None
    return dtype


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear, with half precision on a CPU without half matmul units computed in fp32 (see `upcast_on_cpu`).

    x `(..., in)`, weight `(out, in)` -> `(..., out)` in x's dtype (the autocast dtype under CPU autocast)."""
    half = upcast_on_cpu(x)
    if half is None:
        return F.linear(x, weight, bias)
    with torch.autocast("cpu", enabled=False):
        out = F.linear(x.float(), weight.float(), None if bias is None else bias.float())
    return out.to(half)


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    """x / sqrt(mean(x², -1) + eps) · weight over the last axis, statistics in fp32. Shape and dtype of x."""
    # One fused reduction for the statistics; measured ~25% faster on CPU than F.rms_norm's composite.
    norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True, dtype=torch.float32)  # (..., 1)
    inv = torch.rsqrt(norm.square() / x.shape[-1] + eps).to(x.dtype)  # small (..., 1); not in place: autograd
    return x * inv if weight is None else x * inv * weight


def rms_norm_reference(x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    xf = x.float()
    out = (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)
    return out if weight is None else out * weight


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: x·(1 + scale) + shift, shift/scale broadcast against x `(..., D)`. One fused multiply-add pass."""
    return torch.addcmul(shift, x, 1 + scale)


def modulate_reference(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
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


def rope_rotation(angles: torch.Tensor) -> torch.Tensor:
    """Unit complex numbers exp(i·angle), complex64, from `rope_angles`."""
    return torch.polar(torch.ones_like(angles), angles).to(torch.complex64)


def apply_rope(x: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved channel pairs (x[2i], x[2i+1]) of x `(B, S, H, D)` or `(S, H, D)` by `rotation`, complex
    `(S, D/2)`. Output has x's dtype.

    One complex multiply (measured ~8x faster on CPU than the real-arithmetic cos/sin form with a stack). Half
    precision has no complex type, so it rotates in fp32 and rounds once.
    """
    xf = x if x.dtype in (torch.float32, torch.float64) else x.float()
    z = torch.view_as_complex(xf.unflatten(-1, (-1, 2)))  # (..., S, H, D/2), needs a contiguous last axis
    rot = rotation.to(z.dtype)[:, None, :]  # (S, 1, D/2), broadcast over heads
    return torch.view_as_real(z * rot).flatten(-2).to(x.dtype)


def apply_rope_reference(x: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """The same rotation in real arithmetic, fp64:
    out[2i] = x[2i]·cos − x[2i+1]·sin, out[2i+1] = x[2i]·sin + x[2i+1]·cos."""
    x1, x2 = x.double().unflatten(-1, (-1, 2)).unbind(-1)
    c, s = rotation.real.double()[:, None, :], rotation.imag.double()[:, None, :]
    return torch.stack((x1 * c - x2 * s, x1 * s + x2 * c), dim=-1).flatten(-2).to(x.dtype)
