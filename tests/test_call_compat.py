"""A diffusers user's call keeps working: generator= beside seed=, and callback_on_step_end(pipe, step, timestep,
kwargs) that may return modified latents."""

import pytest
import torch

from tests.tiny_pipeline import tiny_vidgen_pipeline
from vidgen.flow import sigma_schedule
from vidgen.samplers import SAMPLERS


@pytest.fixture(scope="module")
def pipe():
    return tiny_vidgen_pipeline()


def test_generator_draws_the_starting_noise(pipe):
    kw = dict(progress=False, output_type="latent", num_inference_steps=2)
    a = pipe("a red circle", generator=torch.Generator().manual_seed(5), **kw)
    b = pipe("a red circle", generator=torch.Generator().manual_seed(5), **kw)
    noise = torch.randn((1, 4, 2, 4, 4), generator=torch.Generator().manual_seed(5))
    c = pipe("a red circle", latents=noise, **kw)
    assert torch.equal(a.frames, b.frames) and torch.equal(a.frames, c.frames) and a.seed is None
    with pytest.raises(ValueError, match="one of seed=, generator= and latents="):
        pipe("a red circle", generator=torch.Generator(), seed=1, **kw)
    with pytest.raises(TypeError, match="torch.Generator"):
        pipe("a red circle", generator=5, **kw)


def test_callback_on_step_end_sees_each_step_and_may_replace_the_latents(pipe):
    seen = []

    def on_step_end(p, step, timestep, kwargs):
        seen.append((p, step, float(timestep), kwargs["latents"].shape))
        if step == 2:  # the last of three steps
            return {"latents": torch.full_like(kwargs["latents"], 0.25)}
        return {}

    out = pipe("a red circle", seed=0, num_inference_steps=3, shift=1.0, progress=False, output_type="latent",
               anchor_first=False, callback_on_step_end=on_step_end).frames
    assert [s[1] for s in seen] == [0, 1, 2] and all(s[0] is pipe for s in seen)
    assert [round(s[2], 3) for s in seen] == [1000.0, 666.667, 333.333]  # t = 1000·σ of the step's start
    assert torch.equal(out, torch.full_like(out, 0.25))


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_a_step_callback_returning_latents_replaces_them(name):
    def model(x, sigma):
        return x * 0.5

    x = torch.randn(1, 2, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    sigmas = sigma_schedule(4, 1.0)
    plain = SAMPLERS[name](model, x, sigmas)
    same = SAMPLERS[name](model, x, sigmas, callback=lambda info: None)
    nudged = SAMPLERS[name](model, x, sigmas, callback=lambda info: info.x + 1 if info.i == 3 else None)
    assert torch.equal(same, plain) and torch.allclose(nudged, plain + 1)
    with pytest.raises(ValueError, match="may return latents of shape"):
        SAMPLERS[name](model, x, sigmas, callback=lambda info: torch.zeros(3))


def test_the_models_own_sampler_is_the_default():
    own = tiny_vidgen_pipeline(sampler="unipc")
    kw = dict(seed=0, num_inference_steps=3, progress=False, output_type="latent")
    assert torch.equal(own("a red circle", **kw).frames, own("a red circle", sampler="unipc", **kw).frames)
    assert not torch.equal(own("a red circle", **kw).frames, own("a red circle", sampler="euler", **kw).frames)
