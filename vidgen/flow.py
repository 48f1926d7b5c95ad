"""Flow matching in vidgen's one time convention (docs/design.md, restated nowhere else in code).

    σ ∈ [0, 1]; σ = 1 is pure noise, σ = 0 is data.     x_σ = (1 − σ)·x₀ + σ·ε
    the network predicts the velocity v = ε − x₀        the DiT's timestep input is t = 1000·σ
    shift s:  σ' = s·σ / (1 + (s − 1)·σ)                Euler: σ_i = shift(linspace(1, 0, N+1)), x ← x + (σ_{i+1} − σ_i)·v

Timesteps are per sample `(B,)` or per latent frame `(B, F)`. A latent frame with σ = 0 is clean context: it is
conditioning, never noised, never in the loss. Everything here is a pure function of its inputs.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

T_SCALE = 1000.0  # t = T_SCALE · σ


def shift_sigma(sigma: torch.Tensor | float, shift: float) -> torch.Tensor | float:
    """σ' = s·σ / (1 + (s − 1)·σ); s = 1 is the identity, s > 1 spends more steps at high noise."""
    if shift <= 0:
        raise ValueError(f"shift must be > 0, got {shift}")
    return shift * sigma / (1 + (shift - 1) * sigma)


def sigma_schedule(num_steps: int, shift: float = 1.0, device=None) -> torch.Tensor:
    """The N+1 noise levels of an N-step sampler, from 1 down to 0 (fp64 for exact step sizes): (N+1,)."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    return shift_sigma(torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64, device=device), shift)


def to_timestep(sigma: torch.Tensor, integer: bool = False) -> torch.Tensor:
    """The DiT's timestep input t = 1000·σ, same shape as σ; `integer`: ⌊1000·σ⌋ capped at 999, the whole timesteps
    Wan's multistep schedulers feed the model (their first σ is 1 − 1e-6)."""
    if integer:  # in float64, as the schedulers compute it: 0.7 · 1000 must not floor to 699
        return (sigma.double() * T_SCALE).floor().clamp(max=T_SCALE - 1).to(sigma.dtype)
    return sigma * T_SCALE


def _frame_view(sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """σ of shape (B,) or (B, F) as (B, 1, 1|F, 1, 1), broadcastable against a latent (B, C, F, h, w)."""
    if sigma.ndim == 1:
        return sigma.view(-1, 1, 1, 1, 1).to(x.dtype)
    if sigma.ndim == 2:
        if sigma.shape[1] != x.shape[2]:
            raise ValueError(f"per-frame σ has {sigma.shape[1]} frames but the latent has {x.shape[2]}")
        return sigma[:, None, :, None, None].to(x.dtype)
    raise ValueError(f"σ must have shape (B,) or (B, F), got {tuple(sigma.shape)}")


def interpolate(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """x_σ = (1 − σ)·x₀ + σ·ε for latents (B, C, F, h, w) and σ (B,) or (B, F)."""
    s = _frame_view(sigma, x0)
    return (1 - s) * x0 + s * noise


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """v = ε − x₀: the regression target, and the exact velocity of the straight path."""
    return noise - x0


def predict_x0(x: torch.Tensor, v: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Clean estimate from a velocity: x₀ = x_σ − σ·v."""
    return x - _frame_view(sigma, x) * v


# --- training-time noise levels -------------------------------------------------------------------------------


def sample_sigma(batch: int, kind: str = "logit_normal", *, shift: float = 1.0, mean: float = 0.0, std: float = 1.0,
                 generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Training σ per sample (B,): "uniform" on (0, 1) or "logit_normal" (σ = sigmoid(N(mean, std²))), then shifted."""
    if kind == "uniform":
        u = torch.rand(batch, generator=generator, device=device)
    elif kind == "logit_normal":
        u = torch.sigmoid(mean + std * torch.randn(batch, generator=generator, device=device))
    else:
        raise ValueError(f"unknown σ sampler {kind!r}; expected 'uniform' or 'logit_normal'")
    return shift_sigma(u, shift)


def shift_for_tokens(num_tokens: int, base_tokens: int, base_shift: float = 1.0) -> float:
    """Resolution/length-dependent shift: more tokens carry more redundant signal, so noise must be stronger to
    destroy it. Keeps the signal-to-noise ratio of `base_tokens` at σ: s = base_shift·sqrt(num_tokens / base_tokens)."""
    if num_tokens < 1 or base_tokens < 1:
        raise ValueError(f"token counts must be >= 1, got {num_tokens} and {base_tokens}")
    return base_shift * math.sqrt(num_tokens / base_tokens)


def sample_clean_prefix(batch: int, num_frames: int, probs: tuple[float, float, float] = (0.6, 0.25, 0.15), *,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """How many leading latent frames are clean context, per sample (B,) int64.

    probs = (none, first frame only, several frames): text-to-video, frame-to-video and continuation are one model
    trained on this mixture. "Several" draws 2..F−1 frames uniformly (it falls back to the first frame when F = 2);
    a 1-frame latent (an image) never has context.
    """
    if len(probs) != 3 or any(p < 0 for p in probs) or sum(probs) <= 0:
        raise ValueError(f"probs must be three non-negative weights (none, first, several), got {probs}")
    if num_frames <= 1:
        return torch.zeros(batch, dtype=torch.long)
    kind = torch.multinomial(torch.tensor(probs, dtype=torch.float64), batch, replacement=True, generator=generator)
    hi = max(num_frames - 1, 2)  # several: 2..F-1 inclusive
    several = torch.randint(2, hi + 1, (batch,), generator=generator).clamp(max=num_frames - 1)
    return torch.where(kind == 0, 0, torch.where(kind == 1, 1, several)).long()


def frame_sigmas(sigma: torch.Tensor, prefix: torch.Tensor, num_frames: int, context_sigma: float = 0.0) -> torch.Tensor:
    """Per-frame σ (B, F): `sigma[b]` on generated frames, `context_sigma` on the first `prefix[b]` frames.

    context_sigma > 0 is noise augmentation of the context (robustness to imperfect context at inference time);
    such frames are still context: they are never in the loss.
    """
    frames = torch.arange(num_frames, device=sigma.device)
    is_context = frames[None, :] < prefix.to(sigma.device)[:, None]
    return torch.where(is_context, torch.full_like(sigma[:, None], context_sigma), sigma[:, None].expand(-1, num_frames))


def flow_matching_loss(model_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x0: torch.Tensor,
                       sigma: torch.Tensor, noise: torch.Tensor, prefix: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared velocity error over generated frames.

    model_fn(x_σ, t) → v with x (B, C, F, h, w) and t = 1000·σ of shape (B, F); sigma (B, F) per-frame noise levels;
    prefix (B,) the number of leading context frames to exclude (default: frames whose σ is 0 are excluded).
    """
    if sigma.ndim != 2:
        raise ValueError(f"flow_matching_loss needs per-frame σ (B, F), got shape {tuple(sigma.shape)}")
    x_t = interpolate(x0, noise, sigma)
    v = model_fn(x_t, to_timestep(sigma))
    if prefix is None:
        in_loss = sigma > 0
    else:
        in_loss = torch.arange(x0.shape[2], device=x0.device)[None, :] >= prefix.to(x0.device)[:, None]
    mask = in_loss[:, None, :, None, None].to(v.dtype)  # (B, 1, F, 1, 1)
    err = (v.float() - velocity_target(x0, noise).float()) ** 2 * mask
    denom = mask.sum() * x0.shape[1] * x0.shape[3] * x0.shape[4]
    if denom == 0:
        raise ValueError("every frame of the batch is context: nothing to learn from")
    return err.sum() / denom
