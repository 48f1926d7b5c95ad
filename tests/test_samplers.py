import math

import pytest
import torch

from vidgen import flow
from vidgen.samplers import CleanFrames, cfg, get_sampler, sample_dpmpp_2m, sample_euler


def _linear_model(x, sigma):
    # A deterministic stand-in velocity that depends on both x and σ.
    s = sigma.view(-1, 1, 1, 1, 1) if sigma.ndim == 1 else sigma[:, None, :, None, None]
    return 0.3 * x + s


def test_euler_step_equals_formula():
    x = torch.randn(2, 3, 2, 2, 2)
    sigmas = torch.tensor([0.8, 0.5, 0.2], dtype=torch.float64)
    out = sample_euler(_linear_model, x, sigmas)
    x1 = x + (0.5 - 0.8) * (0.3 * x + 0.8)
    x2 = x1 + (0.2 - 0.5) * (0.3 * x1 + 0.5)
    assert torch.allclose(out, x2, atol=1e-6)


def test_dpmpp_2m_steps_equal_formula():
    x = torch.randn(1, 2, 1, 2, 2)
    s0, s1, s2 = 0.9, 0.6, 0.3
    out = sample_dpmpp_2m(_linear_model, x, torch.tensor([s0, s1, s2], dtype=torch.float64))
    lam = lambda s: math.log((1 - s) / s)  # noqa: E731
    d0 = x - s0 * (0.3 * x + s0)
    h0 = lam(s1) - lam(s0)
    x1 = (s1 / s0) * x + (1 - s1) * (1 - math.exp(-h0)) * d0  # first step: first order
    d1 = x1 - s1 * (0.3 * x1 + s1)
    h1 = lam(s2) - lam(s1)
    r = h0 / h1
    d = (1 + 1 / (2 * r)) * d1 - 1 / (2 * r) * d0
    x2 = (s2 / s1) * x1 + (1 - s2) * (1 - math.exp(-h1)) * d
    assert torch.allclose(out, x2, atol=1e-5)


def test_first_order_dpm_step_is_euler_and_first_step_from_pure_noise_is_finite():
    x = torch.randn(1, 2, 1, 2, 2)
    sig = flow.sigma_schedule(1, shift=3.0)  # [1, 0]
    for sampler in (sample_euler, sample_dpmpp_2m):
        out = sampler(_linear_model, x, sig)
        assert torch.allclose(out, x - (0.3 * x + 1.0), atol=1e-6)
    sig = torch.tensor([1.0, 0.4], dtype=torch.float64)
    assert torch.allclose(sample_dpmpp_2m(_linear_model, x, sig), sample_euler(_linear_model, x, sig), atol=1e-6)


def _gaussian_velocity(mu, s):
    """Exact flow velocity when x₀ ~ N(mu, s²) per element and ε ~ N(0, 1)."""

    def v(x, sigma):
        sg = sigma.double().view(-1, 1, 1, 1, 1)
        m, var = (1 - sg) * mu, (1 - sg) ** 2 * s**2 + sg**2
        return (-mu + (sg - (1 - sg) * s**2) / var * (x.double() - m)).float()

    return v


def test_second_order_solver_needs_fewer_steps_than_euler_on_gaussian_data():
    mu, s = 0.7, 0.5
    z = torch.randn(4, 2, 1, 3, 3)
    exact = mu + s * z  # the ODE maps x(1) = z to μ + s·z
    model = _gaussian_velocity(mu, s)

    def steps_to_reach(sampler, tol):
        for n in range(1, 200):
            out = sampler(model, z, flow.sigma_schedule(n, shift=3.0))
            if (out - exact).abs().max() < tol:
                return n
        return math.inf

    euler, dpm = steps_to_reach(sample_euler, 0.05), steps_to_reach(sample_dpmpp_2m, 0.05)
    assert dpm < euler / 2, (dpm, euler)  # measured: 19 vs 69 steps


def test_clean_frames_stay_clean_and_see_sigma_zero():
    x = torch.randn(2, 3, 4, 2, 2)
    ctx = torch.randn(2, 3, 4, 2, 2)
    clean = CleanFrames.prefix(ctx, torch.tensor([1, 2]))
    seen = []

    def model(x_in, sigma):
        seen.append(sigma.clone())
        assert torch.equal(x_in[0, :, :1], ctx[0, :, :1]) and torch.equal(x_in[1, :, :2], ctx[1, :, :2])
        return torch.ones_like(x_in)

    for sampler in (sample_euler, sample_dpmpp_2m):
        seen.clear()
        out = sampler(model, x, flow.sigma_schedule(3), clean=clean)
        assert torch.equal(out[0, :, :1], ctx[0, :, :1]) and torch.equal(out[1, :, :2], ctx[1, :, :2])
        assert torch.allclose(out[0, :, 1:], x[0, :, 1:] - 1)  # generated frames: Σ(Δσ)·v = −1
        assert all(s.shape == (2, 4) for s in seen)
        assert seen[0][0].tolist() == [0.0, 1.0, 1.0, 1.0] and seen[0][1].tolist() == [0.0, 0.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="mask"):
        CleanFrames(ctx, torch.ones(2, 3, dtype=torch.bool))


def test_callback_sees_every_step():
    infos = []
    sample_euler(_linear_model, torch.randn(1, 1, 1, 2, 2), flow.sigma_schedule(4), callback=infos.append)
    assert [i.i for i in infos] == [0, 1, 2, 3] and infos[-1].sigma_next == 0 and infos[0].sigma == 1


def test_cfg_formula_and_branches():
    calls = []
    cond = lambda x, s: calls.append("c") or x * 2  # noqa: E731
    uncond = lambda x, s: calls.append("u") or x * 0.5  # noqa: E731
    x, sig = torch.randn(1, 1, 1, 2, 2), torch.ones(1)
    assert cfg(cond, uncond, 1.0) is cond and cfg(cond, uncond, 0.5) is cond  # g ≤ 1: conditional only
    assert torch.allclose(cfg(cond, uncond, 3.0)(x, sig), x * 0.5 + 3.0 * (x * 2 - x * 0.5))
    both = lambda x, s: (x * 2, x * 0.5)  # noqa: E731
    calls.clear()
    assert torch.allclose(cfg(cond, uncond, 3.0, model_both=both)(x, sig), x * 0.5 + 3.0 * (x * 1.5))
    assert calls == []
    with pytest.raises(ValueError, match=">= 0"):
        cfg(cond, uncond, -1.0)


def test_unknown_sampler_names_choices():
    assert get_sampler("euler") is sample_euler
    with pytest.raises(ValueError, match="dpm\\+\\+2m"):
        get_sampler("heun")
