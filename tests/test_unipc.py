"""UniPC: exact on a point mass, second order on Gaussian data, and step for step diffusers' UniPCMultistepScheduler
(the sampler Wan uses) on the same model callable and the same σ's."""

import pytest
import torch

from tests.test_samplers import _gaussian_velocity
from tests.tiny_pipeline import tiny_vidgen_pipeline
from vidgen import flow
from vidgen.samplers import CleanFrames, get_sampler, sample_dpmpp_2m, sample_euler, sample_unipc

MU, S = 0.7, 0.5  # Gaussian data N(MU, S²): the ODE maps x(1) = z to MU + S·z


def _noise(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _smooth_model(channels: int, seed: int = 1):
    """A fixed random linear map of x plus σ-dependent terms: smooth, but no solver is exact on it."""
    a = 0.5 * torch.randn(channels, channels, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)

    def v(x, sigma):
        s = sigma.double().view(-1, 1, 1, 1, 1)
        xd = x.double()
        out = torch.einsum("ij,bj...->bi...", a, xd) * (1 + s) + torch.sin(3 * s) + 0.5 * s**2 * xd
        return out.to(x.dtype)

    return v


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("steps, shift", [(4, 1.0), (10, 3.0)])
def test_point_mass_lands_on_the_exact_trajectory(order, steps, shift):
    x0, eps = _noise(2, 3, 2, 2, 2, seed=1), _noise(2, 3, 2, 2, 2, seed=2)
    model = lambda x, sigma: (x - x0) / sigma.view(-1, 1, 1, 1, 1)  # noqa: E731  exact velocity for data = x0
    infos = []
    out = sample_unipc(model, eps, flow.sigma_schedule(steps, shift), callback=infos.append, order=order)
    for info in infos:
        assert torch.allclose(info.x, (1 - info.sigma_next) * x0 + info.sigma_next * eps, atol=1e-6)
        assert torch.allclose(info.denoised, x0, atol=1e-6)
    assert torch.allclose(out, x0, atol=1e-6)


def test_second_order_on_gaussian_data_and_better_than_euler():
    z = _noise(4, 2, 1, 3, 3)
    exact, model = MU + S * z, _gaussian_velocity(MU, S)

    def error(sampler, steps, shift):
        return (sampler(model, z, flow.sigma_schedule(steps, shift)) - exact).abs().max().item()

    for shift in (1.0, 3.0):
        for steps in (5, 10):
            assert error(sample_unipc, steps, shift) < error(sample_euler, steps, shift)
        for steps in (20, 40, 80):  # measured 5-33x
            assert error(sample_unipc, steps, shift) < error(sample_euler, steps, shift) / 4
        for steps in (40, 80):  # the corrector's gain over its own predictor (DPM-Solver++(2M)); measured 1.9-2.9x
            assert error(sample_unipc, steps, shift) < error(sample_dpmpp_2m, steps, shift) / 1.5
    errors = [error(sample_unipc, steps, 1.0) for steps in (40, 80, 160)]
    assert errors[0] / errors[1] > 3 and errors[1] / errors[2] > 3, errors  # measured 4.2, 4.2


def _diffusers_unipc(model, x, sigmas, order, dtype):
    """diffusers' scheduler loop with Wan's flags; returns its final latent and the σ's it stepped on."""
    from diffusers import UniPCMultistepScheduler

    scheduler = UniPCMultistepScheduler(num_train_timesteps=1000, prediction_type="flow_prediction",
                                        use_flow_sigmas=True, flow_shift=1.0, solver_order=order, predict_x0=True,
                                        solver_type="bh2", lower_order_final=True, disable_corrector=[])
    scheduler.set_timesteps(sigmas=sigmas[:-1].numpy())  # flow_shift=1: our (already shifted) σ's as given
    x = x.to(dtype)
    for i, t in enumerate(scheduler.timesteps):
        sigma = scheduler.sigmas[i].to(dtype).expand(x.shape[0])
        x = scheduler.step(model(x, sigma), t, x).prev_sample
    return x, scheduler.sigmas.double()


def _rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@pytest.mark.parametrize("model_name", ["smooth", "gaussian"])
@pytest.mark.parametrize("shift", [1.0, 3.0])
@pytest.mark.parametrize("steps", [4, 10, 25])
def test_parity_with_diffusers_unipc(steps, shift, model_name):
    model = _smooth_model(3) if model_name == "smooth" else _gaussian_velocity(MU, S)
    x = _noise(2, 3, 2, 3, 3)
    sigmas = flow.sigma_schedule(steps, shift)
    ref, ref_sigmas = _diffusers_unipc(model, x, sigmas, 2, torch.float64)
    # diffusers keeps σ's in float32 and starts at 1 − 1e-6 (finite log-SNR), else the same grid
    assert torch.allclose(ref_sigmas, sigmas, rtol=0, atol=1.5e-6) and ref_sigmas[-1] == 0
    assert _rel(sample_unipc(model, x, ref_sigmas), ref) < 1e-5  # the same σ's: measured <= 2e-7
    assert _rel(sample_unipc(model, x, sigmas), ref) < 1e-5  # our grid (σ_0 = 1 exactly): measured <= 6e-6
    ref32, _ = _diffusers_unipc(model, x, sigmas, 2, torch.float32)
    assert _rel(sample_unipc(model, x, ref_sigmas), ref32) < 1e-4


@pytest.mark.parametrize("order", [1, 3])
def test_parity_with_diffusers_at_other_orders(order):
    model, x, sigmas = _smooth_model(3), _noise(2, 3, 2, 3, 3), flow.sigma_schedule(10, 3.0)
    ref, ref_sigmas = _diffusers_unipc(model, x, sigmas, order, torch.float64)
    assert _rel(sample_unipc(model, x, ref_sigmas, order=order), ref) < 1e-5


def test_clean_frames_stay_clean_one_model_call_and_step_info_per_step():
    x, ctx = _noise(2, 3, 4, 2, 2, seed=1), _noise(2, 3, 4, 2, 2, seed=2)
    clean = CleanFrames.prefix(ctx, torch.tensor([1, 2]))
    base, seen, infos = _smooth_model(3), [], []

    def model(x_in, sigma):
        seen.append(sigma.clone())
        assert torch.equal(x_in[0, :, :1], ctx[0, :, :1]) and torch.equal(x_in[1, :, :2], ctx[1, :, :2])
        return base(x_in, sigma[:, -1])

    out = sample_unipc(model, x, flow.sigma_schedule(6, 3.0), clean=clean, callback=infos.append)
    assert torch.equal(out[0, :, :1], ctx[0, :, :1]) and torch.equal(out[1, :, :2], ctx[1, :, :2])
    assert len(seen) == 6 and all(s.shape == (2, 4) for s in seen)
    assert seen[0][0].tolist() == [0.0, 1.0, 1.0, 1.0] and seen[0][1].tolist() == [0.0, 0.0, 1.0, 1.0]
    assert [i.i for i in infos] == list(range(6)) and all(i.num_steps == 6 for i in infos)
    assert infos[0].sigma == 1 and infos[-1].sigma_next == 0 and torch.equal(infos[-1].x, out)
    for info in infos:
        assert torch.equal(info.x[1, :, :2], ctx[1, :, :2]) and torch.equal(info.denoised[1, :, :2], ctx[1, :, :2])
    assert torch.isfinite(out).all()


def test_unipc_is_a_registered_sampler_of_the_pipeline_and_cli(tmp_path, monkeypatch):
    assert get_sampler("unipc") is sample_unipc
    pipe = tiny_vidgen_pipeline()
    latents = pipe("a red circle", sampler="unipc", seed=0, progress=False, output_type="latent").frames
    euler = pipe("a red circle", sampler="euler", seed=0, progress=False, output_type="latent").frames
    assert latents.shape == euler.shape and torch.isfinite(latents).all() and not torch.equal(latents, euler)

    from vidgen import cli
    from vidgen.video_io import read_video

    monkeypatch.chdir(tmp_path)
    model_dir = pipe.save_pretrained(tmp_path / "tiny")
    argv = ["generate", "a red circle", "-o", "img.png", "--model", str(model_dir), "--frames", "1", "--steps", "3",
            "--sampler", "unipc", "--no-progress"]
    assert cli.main(argv) == 0
    assert read_video(tmp_path / "img.png")[0].shape == (1, 32, 32, 3)
