import pytest
import torch

from vidgen import flow


def test_shift_closed_form():
    assert flow.shift_sigma(0.5, 3.0) == pytest.approx(3 * 0.5 / (1 + 2 * 0.5))
    s = torch.tensor([0.0, 1.0])
    assert torch.equal(flow.shift_sigma(s, 5.0), s)  # endpoints are fixed
    assert flow.shift_sigma(0.3, 1.0) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="shift"):
        flow.shift_sigma(0.5, 0.0)


def test_sigma_schedule():
    sig = flow.sigma_schedule(4, shift=2.0)
    expected = torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0], dtype=torch.float64)
    assert torch.allclose(sig, 2 * expected / (1 + expected))
    assert sig[0] == 1 and sig[-1] == 0
    with pytest.raises(ValueError, match="num_steps"):
        flow.sigma_schedule(0)


def test_interpolate_and_target_closed_form():
    x0 = torch.randn(2, 3, 4, 2, 2)
    eps = torch.randn_like(x0)
    assert torch.equal(flow.interpolate(x0, eps, torch.zeros(2)), x0)
    assert torch.equal(flow.interpolate(x0, eps, torch.ones(2)), eps)
    x = flow.interpolate(x0, eps, torch.tensor([0.25, 0.5]))
    assert torch.allclose(x[0], 0.75 * x0[0] + 0.25 * eps[0])
    # The straight path's derivative dx/dσ is the velocity target, and x0 is recovered from (x_σ, v).
    v = flow.velocity_target(x0, eps)
    assert torch.allclose(flow.predict_x0(x, v, torch.tensor([0.25, 0.5])), x0, atol=1e-6)
    # per-frame σ: frame 0 clean, others noisy
    sig = torch.tensor([[0.0, 1.0, 1.0, 0.5]]).expand(2, 4)
    x = flow.interpolate(x0, eps, sig)
    assert torch.equal(x[:, :, 0], x0[:, :, 0]) and torch.equal(x[:, :, 1], eps[:, :, 1])
    with pytest.raises(ValueError, match="frames"):
        flow.interpolate(x0, eps, torch.zeros(2, 3))


def test_one_euler_step_with_exact_velocity_lands_on_data():
    x0, eps = torch.randn(1, 2, 1, 2, 2), torch.randn(1, 2, 1, 2, 2)
    sig = flow.sigma_schedule(1)
    x = flow.interpolate(x0, eps, sig[:1].float())
    x = x + (sig[1] - sig[0]).float() * flow.velocity_target(x0, eps)
    assert torch.allclose(x, x0, atol=1e-6)


def test_sigma_samplers_in_range_and_shift_for_tokens():
    g = torch.Generator().manual_seed(0)
    for kind in ("uniform", "logit_normal"):
        s = flow.sample_sigma(1000, kind, shift=3.0, generator=g)
        assert s.shape == (1000,) and (s > 0).all() and (s < 1).all()
    # a shift > 1 moves mass to high noise
    assert flow.sample_sigma(4000, "uniform", shift=3.0, generator=g).mean() > 0.6
    with pytest.raises(ValueError, match="sampler"):
        flow.sample_sigma(2, "cosine")
    assert flow.shift_for_tokens(400, 100, 2.0) == pytest.approx(4.0)
    assert flow.shift_for_tokens(100, 100, 3.0) == pytest.approx(3.0)


def test_clean_prefix_and_frame_sigmas():
    g = torch.Generator().manual_seed(0)
    p = flow.sample_clean_prefix(2000, 5, (0.5, 0.3, 0.2), generator=g)
    assert p.min() >= 0 and p.max() <= 4
    assert abs((p == 0).float().mean() - 0.5) < 0.05 and abs((p == 1).float().mean() - 0.3) < 0.05
    assert ((p >= 2) & (p <= 4)).float().mean() > 0.15
    assert torch.equal(flow.sample_clean_prefix(7, 1), torch.zeros(7, dtype=torch.long))  # an image has no context
    assert flow.sample_clean_prefix(100, 2, (0, 0, 1), generator=g).max() == 1
    fs = flow.frame_sigmas(torch.tensor([0.7, 0.2]), torch.tensor([0, 2]), 4, context_sigma=0.05)
    assert torch.allclose(fs, torch.tensor([[0.7, 0.7, 0.7, 0.7], [0.05, 0.05, 0.2, 0.2]]))


def test_loss_excludes_context_frames():
    x0, eps = torch.randn(2, 3, 4, 2, 2), torch.randn(2, 3, 4, 2, 2)
    sig = flow.frame_sigmas(torch.tensor([0.5, 0.5]), torch.tensor([0, 2]), 4)

    def perfect_on_generated(x, t):
        v = flow.velocity_target(x0, eps).clone()
        v[1, :, :2] += 100.0  # garbage on sample 1's context frames must not count
        return v

    assert flow.flow_matching_loss(perfect_on_generated, x0, sig, eps) == 0
    loss = flow.flow_matching_loss(lambda x, t: torch.zeros_like(x), x0, sig, eps)
    v = flow.velocity_target(x0, eps)
    expected = torch.cat([v[0].flatten(), v[1, :, 2:].flatten()]).pow(2).mean()
    assert torch.allclose(loss, expected)
    # the model sees t = 1000·σ per frame
    seen = {}

    def record(x, t):
        seen["t"] = t
        return torch.zeros_like(x)

    flow.flow_matching_loss(record, x0, sig, eps)
    assert torch.allclose(seen["t"], sig * 1000)
    with pytest.raises(ValueError, match="context"):
        flow.flow_matching_loss(lambda x, t: x, x0, torch.zeros(2, 4), eps)
