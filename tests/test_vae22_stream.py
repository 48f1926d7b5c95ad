"""The Wan 2.2 VAE streams like Wan 2.1's: chunked == one-shot for any split, causal, the image is the anchor, a
bounded explicit cache, and spatial tiling at its 16× compression."""

import pytest
import torch
from vae_oracle import tiny_vae

from causal_vae.tiling import Tiling


@pytest.fixture(scope="module")
def vae():
    return tiny_vae(name="tiny-wan2.2")


def _split(x: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
    assert sum(sizes) == x.shape[2]
    return list(x.split(sizes, dim=2))


@pytest.mark.parametrize("sizes", [[1] * 9, [3, 6], [2, 2, 5], [9], [1, 0, 8]])
def test_stream_encode_equals_one_shot(vae, sizes):
    video = torch.rand(1, 3, 9, 32, 48) * 2 - 1
    parts = list(vae.stream_encode(_split(video, sizes)))
    assert [p.shape[2] for p in parts] == [1, 1, 1]
    torch.testing.assert_close(torch.cat(parts, dim=2), vae.encode(video), atol=1e-5, rtol=0)


@pytest.mark.parametrize("sizes", [[1, 1, 1], [2, 1], [3], [1, 0, 2]])
def test_stream_decode_equals_one_shot(vae, sizes):
    z = torch.randn(1, vae.config.z_dim, 3, 2, 3)
    parts = list(vae.stream_decode(_split(z, sizes)))
    assert [p.shape[2] for p in parts] == [1, 4, 4]
    torch.testing.assert_close(torch.cat(parts, dim=2), vae.decode(z), atol=1e-5, rtol=0)


@pytest.mark.parametrize("sizes", [[1, 8], [5, 4], [1, 4, 4]])
def test_encode_steps_of_several_groups_equal_one_step(vae, sizes):
    """Steps of several latent frames' worth: the averaging shortcut pairs frames across step boundaries (the frame
    before a step's first pair waits in its slot)."""
    video = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    whole, _ = vae.encode_step(video, vae.empty_encoder_cache())
    outs, cache = [], vae.empty_encoder_cache()
    for part in _split(video, sizes):
        h, cache = vae.encode_step(part, cache)
        outs.append(h)
    torch.testing.assert_close(torch.cat(outs, dim=2), whole, atol=1e-5, rtol=0)


def test_decode_steps_of_any_length_equal_one_step(vae):
    z = vae.denormalize(torch.randn(1, vae.config.z_dim, 4, 2, 2))
    whole, _ = vae.decode_step(z, vae.empty_decoder_cache())
    a, cache = vae.decode_step(z[:, :, :2], vae.empty_decoder_cache())  # the first step holds two latent frames
    b, _ = vae.decode_step(z[:, :, 2:], cache)
    assert whole.shape[2] == 13 and a.shape[2] == 5
    torch.testing.assert_close(torch.cat([a, b], dim=2), whole, atol=1e-5, rtol=0)


def test_image_is_the_anchor_of_a_video(vae):
    video = torch.rand(2, 3, 5, 32, 32) * 2 - 1
    z_img = vae.encode(video[:, :, :1])
    assert z_img.shape == (2, vae.config.z_dim, 1, 2, 2)
    torch.testing.assert_close(z_img, vae.encode(video)[:, :, :1], atol=1e-6, rtol=0)
    z = torch.randn(2, vae.config.z_dim, 2, 2, 2)
    torch.testing.assert_close(vae.decode(z[:, :, :1]), vae.decode(z)[:, :, :1], atol=1e-6, rtol=0)


@pytest.mark.parametrize("j", [0, 1])
def test_encode_and_decode_are_causal(vae, j):
    video = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    changed = video.clone()
    changed[:, :, 4 * j + 1 :] = torch.rand_like(changed[:, :, 4 * j + 1 :]) * 2 - 1
    a, b = vae.encode(video), vae.encode(changed)
    torch.testing.assert_close(a[:, :, : j + 1], b[:, :, : j + 1], atol=0, rtol=0)
    assert (a[:, :, j + 1 :] - b[:, :, j + 1 :]).abs().max() > 1e-3
    z = torch.randn(1, vae.config.z_dim, 3, 2, 2)
    moved = z.clone()
    moved[:, :, j + 1 :] += 1.0
    x, y = vae.decode(z), vae.decode(moved)
    torch.testing.assert_close(x[:, :, : 4 * j + 1], y[:, :, : 4 * j + 1], atol=0, rtol=0)
    assert (x[:, :, 4 * j + 1 :] - y[:, :, 4 * j + 1 :]).abs().max() > 1e-3


def test_caches_are_bounded_over_a_long_stream(vae):
    """Memory stays flat: after the first steps, the caches hold the same bytes whatever the length."""
    z = vae.denormalize(torch.randn(1, vae.config.z_dim, 6, 2, 2))
    cache, sizes = vae.empty_decoder_cache(), []
    for j in range(6):
        _, cache = vae.decode_step(z[:, :, j : j + 1], cache)
        sizes.append(cache.nbytes())
    assert len(set(sizes[1:])) == 1, f"decoder cache grows with the stream: {sizes}"
    video = torch.rand(1, 3, 21, 32, 32) * 2 - 1
    cache, sizes = vae.empty_encoder_cache(), []
    for part in _split(video, [1] + [4] * 5):
        _, cache = vae.encode_step(part, cache)
        sizes.append(cache.nbytes())
    assert len(set(sizes[1:])) == 1, f"encoder cache grows with the stream: {sizes}"


def test_tiling_single_tile_is_exact(vae):
    video = torch.rand(1, 3, 5, 32, 32) * 2 - 1
    z = vae.encode(video)
    torch.testing.assert_close(vae.encode(video, tiling=Tiling(32, 0)), z, atol=0, rtol=0)
    torch.testing.assert_close(vae.decode(z, tiling=Tiling(32, 0)), vae.decode(z), atol=0, rtol=0)


@pytest.mark.slow
def test_tiling_approximates_untiled_and_overlap_helps(vae):
    """As for Wan 2.1 (tests/test_vae_stream.py): tiles are never exact (the mid-block attention sees one tile), and
    blending overlaps shrinks the seams. On this smooth clip the mean relative error is ~9% (encode) / ~29% (decode)
    with hard 3-latent tiles and ~4% / ~14% with 4-latent tiles overlapping by half; the bounds are about twice that.
    """
    torch.manual_seed(1)
    video = torch.nn.functional.interpolate(torch.rand(1, 3, 5, 12, 12) * 2 - 1, size=(5, 96, 96), mode="trilinear")
    soft, hard = Tiling(64, 32), Tiling(48, 0)  # in latent pixels: 4 and 2, 3 and 0
    z, x = vae.encode(video), vae.decode(vae.encode(video))
    z_tiled, x_tiled = vae.encode(video, tiling=soft), vae.decode(z, tiling=soft)
    assert z_tiled.shape == z.shape == (1, vae.config.z_dim, 2, 6, 6) and x_tiled.shape == x.shape

    def err(a, b):
        return ((a - b).abs().mean() / b.abs().mean()).item()

    assert err(z_tiled, z) < err(vae.encode(video, tiling=hard), z) and err(z_tiled, z) < 0.08
    assert err(x_tiled, x) < err(vae.decode(z, tiling=hard), x) and err(x_tiled, x) < 0.3


def test_tiling_composes_with_streaming(vae):
    video = torch.rand(1, 3, 5, 64, 64) * 2 - 1
    tiling = Tiling(48, 16)  # 2×2 tiles of 3 latent pixels
    z = vae.encode(video, tiling=tiling)
    streamed = torch.cat(list(vae.stream_encode(_split(video, [2, 3]), tiling=tiling)), dim=2)
    torch.testing.assert_close(streamed, z, atol=1e-5, rtol=0)
    x = vae.decode(z, tiling=tiling)
    streamed = torch.cat(list(vae.stream_decode(_split(z, [1, 1]), tiling=tiling)), dim=2)
    torch.testing.assert_close(streamed, x, atol=1e-5, rtol=0)


def test_tiles_must_be_whole_latent_pixels(vae):
    video = torch.rand(1, 3, 1, 48, 48) * 2 - 1
    with pytest.raises(ValueError, match="multiples of 16"):
        vae.encode(video, tiling=Tiling(24, 8))


def test_bad_sizes_name_the_compression(vae):
    with pytest.raises(ValueError, match="multiple of 16"):
        vae.encode(torch.zeros(1, 3, 1, 24, 32))
