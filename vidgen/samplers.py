"""Samplers for the flow-matching ODE: pure functions over a model callable and a σ schedule (vidgen/flow.py).

    model_fn(x, sigma) -> v        x (B, C, F, h, w) float32; sigma (B,) per sample or (B, F) per latent frame

The denoising loop exists once per solver. Text-to-video, frame-to-video and continuation differ only in data: a
`CleanFrames` (latents + per-frame mask) whose frames are re-imposed after every step and whose σ stays 0, so the
model sees them as clean context. Guidance is a wrapper (`cfg`) that returns another model callable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from vidgen.flow import predict_x0

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class CleanFrames:
    """Latent frames held clean (σ = 0) during sampling.

    latents (B, C, F, h, w): values of the clean frames (entries of other frames are ignored);
    mask (B, F) bool: True where the frame is clean context.
    """

    latents: torch.Tensor
    mask: torch.Tensor

    def __post_init__(self):
        b, _, f = self.latents.shape[:3]
        if self.mask.shape != (b, f) or self.mask.dtype != torch.bool:
            raise ValueError(f"mask must be bool of shape {(b, f)} to match latents {tuple(self.latents.shape)}, "
                             f"got {self.mask.dtype} {tuple(self.mask.shape)}")

    @classmethod
    def prefix(cls, latents: torch.Tensor, num_frames: int | torch.Tensor) -> "CleanFrames":
        """The first `num_frames` latent frames (int, or (B,) per sample) of `latents` (B, C, F, h, w) are clean."""
        b, f = latents.shape[0], latents.shape[2]
        n = torch.as_tensor(num_frames, device=latents.device).expand(b)
        mask = torch.arange(f, device=latents.device)[None, :] < n[:, None]
        return cls(latents, mask)

    def impose(self, x: torch.Tensor) -> torch.Tensor:
        """x with its clean frames replaced by the context: (B, C, F, h, w)."""
        m = self.mask[:, None, :, None, None]
        return torch.where(m, self.latents.to(x.dtype), x)

    def sigma(self, sigma: float, x: torch.Tensor) -> torch.Tensor:
        """Per-frame σ (B, F): `sigma` on generated frames, 0 on clean ones."""
        s = torch.full(self.mask.shape, sigma, dtype=torch.float64, device=x.device)
        return s.masked_fill(self.mask.to(x.device), 0.0)


@dataclass(frozen=True)
class StepInfo:
    """What a per-step callback sees: step i of n moved x from sigma to sigma_next; denoised is the x₀ estimate.

    A sampler counts its own steps. The pipeline counts over its whole call, so a callback never sees a step twice:
    with anchor-first sampling the first half of the steps are stage "anchor" (latent frame 0 alone), the rest
    stage "clip". A callback may return a tensor shaped like x: it replaces the latents from then on."""

    i: int
    num_steps: int
    sigma: float
    sigma_next: float
    x: torch.Tensor
    denoised: torch.Tensor
    stage: str = "clip"


def after_step(callback: Callable, info: StepInfo, x: torch.Tensor, clean: CleanFrames | None) -> torch.Tensor:
    """Run a step's callback; a tensor it returns replaces the latents x (its clean frames re-imposed)."""
    out = callback(info)
    if out is None:
        return x
    if not isinstance(out, torch.Tensor) or out.shape != x.shape:
        raise ValueError(f"a step callback may return latents of shape {tuple(x.shape)} (or None), got "
                         f"{type(out).__name__} {tuple(getattr(out, 'shape', ()))}")
    out = out.to(x.device, x.dtype)
    return clean.impose(out) if clean is not None else out


def _model_sigma(sigma: float, x: torch.Tensor, clean: CleanFrames | None) -> torch.Tensor:
    """σ as the model sees it: (B,) without clean frames, (B, F) with them; float64, so that the whole timesteps of
    `flow.to_timestep(σ, integer=True)` are those of the schedule's own σ's."""
    if clean is None:
        return torch.full((x.shape[0],), sigma, dtype=torch.float64, device=x.device)
    return clean.sigma(sigma, x)


def _prepare(x: torch.Tensor, sigmas: torch.Tensor, clean: CleanFrames | None) -> tuple[torch.Tensor, list[float]]:
    if sigmas.ndim != 1 or len(sigmas) < 2:
        raise ValueError(f"sigmas must be a 1-D schedule of N+1 >= 2 levels, got shape {tuple(sigmas.shape)}")
    if x.ndim != 5:
        raise ValueError(f"x must be a latent (B, C, F, h, w), got shape {tuple(x.shape)}")
    x = x.float()
    if clean is not None:
        x = clean.impose(x)
    return x, [float(s) for s in sigmas]


def sample_euler(model_fn: ModelFn, x: torch.Tensor, sigmas: torch.Tensor, *, clean: CleanFrames | None = None,
                 callback: Callable[[StepInfo], None] | None = None) -> torch.Tensor:
    """Euler: x ← x + (σ_{i+1} − σ_i)·v(x, σ_i). x (B, C, F, h, w) at σ_0 → float32 latent at σ_N."""
    x, sig = _prepare(x, sigmas, clean)
    n = len(sig) - 1
    for i in range(n):
        s, s_next = sig[i], sig[i + 1]
        sigma = _model_sigma(s, x, clean)
        v = model_fn(x, sigma).float()
        denoised = predict_x0(x, v, sigma)
        x = x + (s_next - s) * v
        if clean is not None:
            x = clean.impose(x)
            denoised = clean.impose(denoised)
        if callback is not None:
            x = after_step(callback, StepInfo(i, n, s, s_next, x, denoised), x, clean)
    return x


def _lambda(sigma: float) -> float:
    """log-SNR half: λ = log(α/σ) with α = 1 − σ; −∞ at pure noise, +∞ at data."""
    if sigma <= 0:
        return math.inf
    if sigma >= 1:
        return -math.inf
    return math.log((1 - sigma) / sigma)


def sample_dpmpp_2m(model_fn: ModelFn, x: torch.Tensor, sigmas: torch.Tensor, *, clean: CleanFrames | None = None,
                    callback: Callable[[StepInfo], None] | None = None) -> torch.Tensor:
    """DPM-Solver++(2M), data-prediction multistep solver, in flow form (α = 1 − σ, x₀ = x − σ·v).

    With h = λ_{i+1} − λ_i and r = h_{i−1}/h:
        D = (1 + 1/(2r))·x₀_i − 1/(2r)·x₀_{i−1}        (x₀_i alone on the first step, after σ = 1, and onto σ = 0)
        x ← (σ_{i+1}/σ_i)·x + α_{i+1}·(1 − e^{−h})·D
    Its first-order form is exactly the Euler step, so the gain comes from the second-order correction.
    """
    x, sig = _prepare(x, sigmas, clean)
    n = len(sig) - 1
    old_denoised, h_prev = None, None
    for i in range(n):
        s, s_next = sig[i], sig[i + 1]
        sigma = _model_sigma(s, x, clean)
        v = model_fn(x, sigma).float()
        denoised = predict_x0(x, v, sigma)
        lam, lam_next = _lambda(s), _lambda(s_next)
        h = lam_next - lam
        if s_next == 0:
            x = denoised  # σ_{i+1} = 0: the update lands on the data estimate
        else:
            d = denoised
            if old_denoised is not None and math.isfinite(h_prev) and math.isfinite(h):
                r = h_prev / h
                d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            # e^{−h} = (σ_{i+1}/α_{i+1})·(α_i/σ_i) ; written so σ_i = 1 (α_i = 0, h = ∞) stays finite
            exp_neg_h = (s_next / (1 - s_next)) * ((1 - s) / s)
            x = (s_next / s) * x + (1 - s_next) * (1 - exp_neg_h) * d
        if clean is not None:
            x = clean.impose(x)
            denoised = clean.impose(denoised)
        old_denoised, h_prev = denoised, h
        if callback is not None:
            x = after_step(callback, StepInfo(i, n, s, s_next, x, denoised), x, clean)
    return x


# The log-SNR λ at pure noise is −∞, which would zero every divided difference that reaches back to σ = 1. UniPC's
# λ-spacings read σ = 1 as 1 − 1e-6, as diffusers and Wan do, so its results match theirs; the step itself and the
# model keep the schedule's own σ.
_UNIPC_SIGMA_MAX = 1 - 1e-6


def _unipc_rhos(rks: list[float], h: float, corrector: bool) -> list[float]:
    """UniPC's weights ρ at order p = len(rks) + 1, with B(h) = e^{−h} − 1 (bh2).

    The corrector solves Σ_k ρ_k·r_k^{j−1} = b_j (j = 1..p) over r = (r_1, …, r_{p−1}, 1), where
    b_j = j!·(−h)·φ_{j+1}(−h)/B(h); the predictor drops the last row and column. The order-1 corrector and the
    order-2 predictor use ρ = 1/2 (the h → 0 limit), as the paper's and diffusers' solvers do."""
    p = len(rks) + 1
    if p == 1:
        return [0.5] if corrector else []
    if p == 2 and not corrector:
        return [0.5]
    hh = -h
    b_h = math.expm1(hh)
    phi, fact, b = math.expm1(hh) / hh, 1, []  # phi = φ_j(hh); hh·φ_{j+1} = φ_j − 1/j!
    for j in range(1, p + 1):
        b.append((phi - 1 / fact) * fact / b_h)
        phi = (phi - 1 / fact) / hh
        fact *= j + 1
    r = torch.tensor(rks + [1.0], dtype=torch.float64)
    mat = torch.stack([r ** (j - 1) for j in range(1, p + 1)])
    if not corrector:
        mat, b = mat[:-1, :-1], b[:-1]
    return torch.linalg.solve(mat, torch.tensor(b, dtype=torch.float64)).tolist()


def sample_unipc(model_fn: ModelFn, x: torch.Tensor, sigmas: torch.Tensor, *, clean: CleanFrames | None = None,
                 callback: Callable[[StepInfo], None] | None = None, order: int = 2) -> torch.Tensor:
    """UniPC (bh2, data prediction), multistep predictor–corrector, in flow form (α = 1 − σ, x₀ = x − σ·v).

    With m_i = x₀(x_i, σ_i), h = λ_{i+1} − λ_i, r_k = (λ_{i−k} − λ_i)/h and D_k = (m_{i−k} − m_i)/r_k:
        predictor (UniP)  x_{i+1} = (σ_{i+1}/σ_i)·x_i + α_{i+1}·(1 − e^{−h})·(m_i + Σ_k ρ_k·D_k)
        corrector (UniC)  x_i ← the same step from x_{i−1}, plus ρ_p·(m_i − m_{i−1}) in the bracket, m_i evaluated at
                          the predicted x_i, which the next predictor then reuses: one model call per step.
    The order warms up (1, 2, …, `order`) and falls back to 1 on the last step, which lands on m_{N−1} when σ_N = 0;
    StepInfo.x is the predicted x_{i+1}, corrected after the next model call. UniP-2's step is DPM-Solver++(2M)'s.
    """
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    x, sig = _prepare(x, sigmas, clean)
    n = len(sig) - 1
    lam = [math.log((1 - s) / s) if s > 0 else math.inf for s in (min(s, _UNIPC_SIGMA_MAX) for s in sig)]

    def advance(x_i, i, ms, p, m_new=None):
        """x_i at σ_i → σ_{i+1}, order p, from the estimates ms = [m_i, m_{i−1}, …]; corrects with m_new if given."""
        s, s_next = sig[i], sig[i + 1]
        exp_neg_h = (s_next / (1 - s_next)) * ((1 - s) / s)  # e^{−h}: 0 from σ = 1 and onto σ = 0
        rks = [(lam[i - k] - lam[i]) / (lam[i + 1] - lam[i]) for k in range(1, p)]
        rhos = _unipc_rhos(rks, lam[i + 1] - lam[i], corrector=m_new is not None)
        d = ms[0]
        for k in range(1, p):
            d = d + rhos[k - 1] * (ms[k] - ms[0]) / rks[k - 1]
        if m_new is not None:
            d = d + rhos[-1] * (m_new - ms[0])
        return (s_next / s) * x_i + (1 - s_next) * (1 - exp_neg_h) * d

    ms: list[torch.Tensor] = []  # data estimates, newest first
    x_prev, p_prev = None, 0
    for i in range(n):
        s, s_next = sig[i], sig[i + 1]
        sigma = _model_sigma(s, x, clean)
        v = model_fn(x, sigma).float()
        denoised = predict_x0(x, v, sigma)
        if clean is not None:
            denoised = clean.impose(denoised)
        if x_prev is not None:
            x = advance(x_prev, i - 1, ms, p_prev, m_new=denoised)
            if clean is not None:
                x = clean.impose(x)
        ms = [denoised] + ms[:order - 1]
        p = min(order, len(ms), n - i)
        x_prev, p_prev = x, p
        x = advance(x, i, ms, p)
        if clean is not None:
            x = clean.impose(x)
        if callback is not None:
            x = after_step(callback, StepInfo(i, n, s, s_next, x, denoised), x, clean)
    return x


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "euler": sample_euler,
    "dpm++2m": sample_dpmpp_2m,
    "unipc": sample_unipc,
}


def get_sampler(name: str) -> Callable[..., torch.Tensor]:
    """The sampler registered under `name` (see SAMPLERS)."""
    try:
        return SAMPLERS[name]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r}; expected one of {sorted(SAMPLERS)}") from None


def cfg(model_cond: ModelFn, model_uncond: ModelFn, scale: float, *,
        model_both: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None) -> ModelFn:
    """Classifier-free guidance: v = v_uncond + scale·(v_cond − v_uncond).

    scale ≤ 1 returns `model_cond` (the unconditional branch is never run). `model_both(x, sigma)`, when given,
    returns (v_cond, v_uncond) from one batched forward instead of two calls.
    """
    if scale < 0:
        raise ValueError(f"guidance scale must be >= 0, got {scale}")
    if scale <= 1:
        return model_cond

    def guided(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if model_both is not None:
            v_cond, v_uncond = model_both(x, sigma)
        else:
            v_cond, v_uncond = model_cond(x, sigma), model_uncond(x, sigma)
        return v_uncond + scale * (v_cond - v_uncond)

    return guided
