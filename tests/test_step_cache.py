import pytest
import torch

from tests.tiny_pipeline import perturb, tiny_vidgen_pipeline
from vidgen.dit.config import DiTConfig
from vidgen.dit.model import DiT
from vidgen.dit.step_cache import StepCache, StepCacheConfig

HUGE = 1e9  # every step after the first reuses the cache


@pytest.fixture(scope="module")
def pipe():
    return tiny_vidgen_pipeline(num_inference_steps=4)


@pytest.fixture(scope="module")
def dit():
    torch.manual_seed(0)
    return perturb(DiT(DiTConfig.preset("tiny"))).eval()


def _latents(batch=1, seed=3):
    return torch.randn((batch, 4, 2, 4, 4), generator=torch.Generator().manual_seed(seed))


def _run(pipe, step_cache, batch_guidance=True, **kw):
    return pipe("a red circle", latents=_latents(), output_type="latent", progress=False, step_cache=step_cache,
                batch_guidance=batch_guidance, **kw)


def test_threshold_zero_equals_no_cache_exactly(pipe):
    ref = _run(pipe, None)
    out = _run(pipe, StepCacheConfig(threshold=0.0))
    assert torch.equal(out.frames, ref.frames) and ref.step_caches == ()
    (cache,) = out.step_caches  # batched guidance: one cache for both branches
    assert cache.computed == 4 and cache.skipped == 0


def test_huge_threshold_skips_all_but_the_first_step(pipe):
    out = _run(pipe, HUGE)
    (cache,) = out.step_caches
    assert (cache.computed, cache.skipped) == (1, 3) and cache.skipped_fraction == 0.75
    warm = _run(pipe, StepCacheConfig(threshold=HUGE, warmup_steps=2)).step_caches[0]
    assert (warm.computed, warm.skipped) == (2, 2)
    assert not torch.equal(out.frames, _run(pipe, None).frames)  # the skipped steps did change something


def test_guidance_branches_keep_their_own_trajectories(pipe):
    batched = _run(pipe, HUGE)
    separate = _run(pipe, HUGE, batch_guidance=False)
    assert len(separate.step_caches) == 2  # cond and uncond, never one cache for both
    assert all((c.computed, c.skipped) == (1, 3) for c in separate.step_caches)
    torch.testing.assert_close(separate.frames, batched.frames, rtol=1e-4, atol=1e-5)
    # guidance off: only the conditional branch, one cache
    assert len(_run(pipe, HUGE, guidance_scale=1.0).step_caches) == 1


def test_batch_items_reuse_only_their_own_residual(dit):
    """Item 0 of a batch of 2 with a cache equals item 0 run alone with its own cache, step after step."""
    x = torch.randn(2, 4, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    ctx = torch.randn(2, 5, 24, generator=torch.Generator().manual_seed(2))
    both, alone = StepCache(StepCacheConfig(HUGE)), StepCache(StepCacheConfig(HUGE))
    with torch.no_grad():
        for t in (900.0, 700.0, 500.0):
            out = dit(x, torch.full((2,), t), ctx, step_cache=both)
            ref = dit(x[:1], torch.full((1,), t), ctx[:1], step_cache=alone)
            torch.testing.assert_close(out[:1], ref, rtol=1e-5, atol=1e-6)
            x = x + 0.1 * out
    assert both.skipped == alone.skipped == 2


def test_decision_follows_the_most_changed_item(dit):
    x = torch.randn(2, 4, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    ctx = torch.randn(2, 5, 24, generator=torch.Generator().manual_seed(2))
    cache = StepCache(StepCacheConfig(threshold=0.01))
    with torch.no_grad():
        dit(x, torch.full((2,), 500.0), ctx, step_cache=cache)
        dit(x, torch.full((2,), 500.0), ctx, step_cache=cache)  # unchanged input: change 0, reused
        assert cache.skipped == 1
        moved = x.clone()
        moved[1] = torch.randn_like(moved[1])  # only item 1 changes a lot
        dit(moved, torch.full((2,), 500.0), ctx, step_cache=cache)
    assert (cache.computed, cache.skipped) == (2, 1)


def test_a_cache_belongs_to_one_trajectory(dit):
    cache = StepCache(StepCacheConfig(HUGE))
    ctx = torch.randn(1, 5, 24)
    with torch.no_grad():
        dit(_latents(), torch.tensor([500.0]), ctx, step_cache=cache)
        with pytest.raises(ValueError, match="one StepCache per sampling run"):
            dit(torch.randn(2, 4, 2, 4, 4), torch.tensor([500.0, 500.0]), ctx.expand(2, -1, -1), step_cache=cache)


def test_bad_config():
    with pytest.raises(ValueError, match="threshold must be >= 0"):
        StepCacheConfig(threshold=-0.1)
    with pytest.raises(ValueError, match="warmup_steps"):
        StepCacheConfig(threshold=0.1, warmup_steps=0)
    with pytest.raises(TypeError, match="step_cache must be"):
        tiny_vidgen_pipeline()("x", step_cache="fast", progress=False)
