"""Streaming, the first-frame anchor, causality, the explicit cache, and spatial tiling."""

import pytest
import torch
from vae_oracle import tiny_vae

from causal_vae.cache import TemporalCache
from causal_vae.tiling import TiledStep, Tiling, tile_starts


@pytest.fixture(scope="module")
def vae():
    return tiny_vae()


def _split(x: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
    assert sum(sizes) == x.shape[2]
    return list(x.split(sizes, dim=2))


@pytest.mark.parametrize("sizes", [[1] * 9, [3, 6], [2, 2, 5], [9], [1, 0, 8]])
def test_stream_encode_equals_one_shot(vae, sizes):
    video = torch.rand(1, 3, 9, 16, 24) * 2 - 1
    parts = list(vae.stream_encode(_split(video, sizes)))
    torch.testing.assert_close(torch.cat(parts, dim=2), vae.encode(video), atol=1e-5, rtol=0)


def test_stream_encode_yields_each_latent_as_soon_as_determined(vae):
    video = torch.rand(1, 3, 9, 16, 16) * 2 - 1
    got = []
    for i, part in enumerate(vae.stream_encode(_split(video, [1] * 9))):
        got.append(part.shape[2])
    assert got == [1, 1, 1]
    stream = vae.stream_encode(iter(_split(video, [1] * 9)))
    first = next(stream)  # needs only frame 0
    assert first.shape[2] == 1


@pytest.mark.parametrize("sizes", [[1, 1, 1], [2, 1], [3], [1, 0, 2]])
def test_stream_decode_equals_one_shot(vae, sizes):
    z = torch.randn(1, 4, 3, 2, 3)
    parts = list(vae.stream_decode(_split(z, sizes)))
    assert [p.shape[2] for p in parts] == [1, 4, 4]
    torch.testing.assert_close(torch.cat(parts, dim=2), vae.decode(z), atol=1e-5, rtol=0)


def test_whole_clip_step_equals_grouped_steps(vae):
    """Every layer is causal for any chunking: one step over the whole clip == frame 0 then groups of 4."""
    video = torch.rand(1, 3, 9, 16, 16) * 2 - 1
    mu, _ = vae.posterior(video)
    torch.testing.assert_close(vae.normalize(mu), vae.encode(video), atol=1e-5, rtol=0)
    z = torch.randn(1, 4, 3, 2, 2)
    torch.testing.assert_close(vae.decode_raw(vae.denormalize(z)).clamp(-1, 1), vae.decode(z), atol=1e-5, rtol=0)


def test_image_is_the_anchor_of_a_video(vae):
    video = torch.rand(2, 3, 5, 16, 16) * 2 - 1
    image = video[:, :, :1]
    z_img = vae.encode(image)
    assert z_img.shape == (2, 4, 1, 2, 2)
    torch.testing.assert_close(z_img, vae.encode(video)[:, :, :1], atol=1e-6, rtol=0)
    x_img = vae.decode(z_img)
    assert x_img.shape == image.shape
    z = torch.randn(2, 4, 2, 2, 2)
    torch.testing.assert_close(vae.decode(z[:, :, :1]), vae.decode(z)[:, :, :1], atol=1e-6, rtol=0)


@pytest.mark.parametrize("j", [0, 1])
def test_encode_is_causal(vae, j):
    video = torch.rand(1, 3, 9, 16, 16) * 2 - 1
    changed = video.clone()
    changed[:, :, 4 * j + 1 :] = torch.rand_like(changed[:, :, 4 * j + 1 :]) * 2 - 1
    a, b = vae.encode(video), vae.encode(changed)
    torch.testing.assert_close(a[:, :, : j + 1], b[:, :, : j + 1], atol=0, rtol=0)
    assert (a[:, :, j + 1 :] - b[:, :, j + 1 :]).abs().max() > 1e-3  # later latents do see the change


@pytest.mark.parametrize("j", [0, 1])
def test_decode_is_causal(vae, j):
    z = torch.randn(1, 4, 3, 2, 2)
    changed = z.clone()
    changed[:, :, j + 1 :] += 1.0
    a, b = vae.decode(z), vae.decode(changed)
    torch.testing.assert_close(a[:, :, : 4 * j + 1], b[:, :, : 4 * j + 1], atol=0, rtol=0)
    assert (a[:, :, 4 * j + 1 :] - b[:, :, 4 * j + 1 :]).abs().max() > 1e-3


def test_cache_is_explicit_immutable_and_bounded(vae):
    z = vae.denormalize(torch.randn(1, 4, 6, 2, 2))
    cache = vae.empty_decoder_cache()
    assert isinstance(cache, TemporalCache) and not cache.started
    x0, c1 = vae.decode_step(z[:, :, :1], cache)
    assert cache.states == (None,) * vae.num_decoder_slots  # the old cache is untouched
    sizes = []
    c = c1
    for j in range(1, 6):
        _, c = vae.decode_step(z[:, :, j : j + 1], c)
        sizes.append(c.nbytes())
    assert len(set(sizes)) == 1, f"cache grows with the stream: {sizes}"
    # Branching: resuming twice from the same cache gives the same frames.
    a, _ = vae.decode_step(z[:, :, 1:2], c1)
    b, _ = vae.decode_step(z[:, :, 1:2], c1)
    torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_tile_starts_cover_the_axis():
    assert tile_starts(96, 96, 0) == [0]
    assert tile_starts(96, 48, 16) == [0, 32, 48]
    assert tile_starts(100, 40, 8) == [0, 32, 60]


def test_tile_blending_is_exact_for_a_pointwise_map():
    """Blend weights sum to one everywhere: tiling a map with no spatial extent reproduces it exactly."""
    step = TiledStep(lambda x, c: (3 * x + 1, c), lambda: None, Tiling(tile=32, overlap=16), scale=1, in_unit=1)
    x = torch.randn(1, 2, 3, 72, 56)
    torch.testing.assert_close(step(x), 3 * x + 1, atol=1e-6, rtol=1e-6)


def test_tiling_single_tile_is_exact(vae):
    video = torch.rand(1, 3, 5, 32, 32) * 2 - 1
    z = vae.encode(video)
    torch.testing.assert_close(vae.encode(video, tiling=Tiling(32, 0)), z, atol=0, rtol=0)
    torch.testing.assert_close(vae.decode(z, tiling=Tiling(32, 0)), vae.decode(z), atol=0, rtol=0)


def test_tiling_approximates_untiled_and_overlap_helps(vae):
    """The mid-block attention sees the whole frame, so tiles can never be exact; blending bounds the seam error.

    On a spatially smooth clip the tiny random VAE's mean relative error is ~16% (encode) / ~11% (decode) with hard
    tile edges and ~5% / ~2.5% with half-tile overlaps: the bounds below are about twice the measured values.
    """
    torch.manual_seed(1)
    video = torch.nn.functional.interpolate(torch.rand(1, 3, 5, 12, 12) * 2 - 1, size=(5, 96, 96), mode="trilinear")
    z, x = vae.encode(video), vae.decode(vae.encode(video))

    def err(a, b):
        return ((a - b).abs().mean() / b.abs().mean()).item()

    hard = Tiling(48, 0)
    soft = Tiling(64, 32)
    assert err(vae.encode(video, tiling=soft), z) < err(vae.encode(video, tiling=hard), z)
    assert err(vae.encode(video, tiling=soft), z) < 0.10
    assert err(vae.decode(z, tiling=soft), x) < err(vae.decode(z, tiling=hard), x)
    assert err(vae.decode(z, tiling=soft), x) < 0.05


def test_tiling_composes_with_streaming(vae):
    video = torch.rand(1, 3, 9, 48, 48) * 2 - 1
    tiling = Tiling(32, 16)
    z = vae.encode(video, tiling=tiling)
    streamed = torch.cat(list(vae.stream_encode(_split(video, [2, 3, 4]), tiling=tiling)), dim=2)
    torch.testing.assert_close(streamed, z, atol=1e-5, rtol=0)
    x = vae.decode(z, tiling=tiling)
    streamed = torch.cat(list(vae.stream_decode(_split(z, [1, 2]), tiling=tiling)), dim=2)
    torch.testing.assert_close(streamed, x, atol=1e-5, rtol=0)


def test_fast_cpu_conv_matches_stock_conv():
    from causal_vae.layers import CausalConv3d, conv3d

    conv = CausalConv3d(16, 24, 3)
    x = torch.randn(1, 16, 5, 32, 32)
    with torch.no_grad():
        stock = conv3d(conv, x, fast=False)
        fast = conv3d(conv, x, fast=True)
    torch.testing.assert_close(fast, stock, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rms_norm_is_f_normalize_with_and_without_gradients(dtype):
    """RMSNorm's sum-of-squares form (fast on CPU) computes what F.normalize does, values and gradients, an all-zero
    channel vector included (both give 0 there and divide by the same 1e-12 floor)."""
    import torch.nn.functional as F

    from causal_vae.layers import RMSNorm

    norm = RMSNorm(6)
    with torch.no_grad():
        norm.gamma.copy_(torch.rand(6, 1, 1, 1) + 0.5)
    norm.to(dtype)  # as a bf16 model runs it: its gamma in bf16 too
    x = torch.randn(2, 6, 3, 5, 4).to(dtype)
    x[0, :, 1, 2, 3] = 0
    x.requires_grad_(True)

    def reference(v):
        return F.normalize(v.float(), dim=1).to(v.dtype) * norm.scale * norm.gamma

    up = torch.randn(x.shape).to(dtype)
    for silu in (False, True):
        ours, ref = norm(x, silu=silu), reference(x)
        ref = F.silu(ref) if silu else ref
        tol = {"atol": 1e-6, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 2e-2, "rtol": 2e-2}
        torch.testing.assert_close(ours, ref, **tol)
        g_ours, = torch.autograd.grad(ours, x, up)
        g_ref, = torch.autograd.grad(ref, x, up)
        torch.testing.assert_close(g_ours, g_ref, **tol)
        with torch.no_grad():
            torch.testing.assert_close(norm(x, silu=silu), ref, **tol)
    assert (norm(x)[0, :, 1, 2, 3] == 0).all()
