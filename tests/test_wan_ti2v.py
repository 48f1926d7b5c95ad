"""Wan 2.2 TI2V-5B's shape (the Wan 2.2 VAE, a DiT on its 16×-compressed latents) against diffusers' pipelines with
`expand_timesteps=True`: text-to-video and image-to-video from one folder, the image's latent held as frame 0 at t = 0
(vidgen's own clean-frame mechanism), and continuation and chained long videos on the same model."""

import numpy as np
import pytest
import torch

from tests import wan_oracles as W
from vidgen.pipeline import VideoPipeline

pytest.importorskip("diffusers")
pytest.importorskip("ftfy")

PROMPTS = dict(prompt="a red circle moves left", negative_prompt="blue square")
SIZE = dict(num_frames=5, height=32, width=64)  # multiples of 32: the VAE's 16× and the DiT's 2× patch


@pytest.fixture(scope="module")
def ti2v(tmp_path_factory):
    t2v, i2v = W.ti2v_pipelines()
    folder = tmp_path_factory.mktemp("ti2v") / "model"
    t2v.save_pretrained(folder)
    ours = VideoPipeline.from_pretrained(folder, device="cpu", dtype=torch.float32, progress=False)
    return W.on_our_sigmas(t2v), W.on_our_sigmas(i2v), ours


def _noise(pipe, seed=3):
    z = pipe.vae.config.z_dim
    return torch.randn(1, z, 2, 2, 4, generator=torch.Generator().manual_seed(seed))


def _compare(oracle, ours, **kw):
    errors = []
    for output_type in ("latent", "np"):
        with torch.no_grad():
            ref = oracle(latents=_noise(ours), output_type=output_type, **PROMPTS, **SIZE, **kw).frames
        got = ours(latents=_noise(ours), output_type=output_type, progress=False, **PROMPTS, **SIZE, **kw).frames
        assert np.asarray(got).shape == np.asarray(ref).shape
        assert np.asarray(ref).std() > 1e-3
        errors.append(W.rel(got, ref))
    return errors


def test_kind_and_defaults(ti2v):
    _, _, ours = ti2v
    assert ours.kind == "wan2.2-ti2v" and ours.config.clean_frames
    assert (ours.config.num_frames, ours.config.height, ours.config.width, ours.config.fps) == (121, 704, 1280, 24)
    assert ours.geometry.multiple == 32 and ours.geometry.spatial == 16


def test_text_to_video_matches_diffusers(ti2v):
    t2v, _, ours = ti2v
    latents, frames = _compare(t2v, ours, num_inference_steps=3, guidance_scale=4.0)
    assert latents < 1e-4 and frames < 1e-3, (latents, frames)  # measured 3.5e-5, 1.8e-6


def test_image_to_video_matches_diffusers_and_keeps_the_image_latent(ti2v):
    _, i2v, ours = ti2v
    image = W.picture(32, 64, 1)
    latents, frames = _compare(i2v, ours, image=image, num_inference_steps=3, guidance_scale=4.0)
    assert latents < 1e-4 and frames < 1e-3, (latents, frames)  # measured 4.2e-5, 1.3e-6
    out = ours(image=image, latents=_noise(ours), output_type="latent", progress=False, **PROMPTS, **SIZE,
               num_inference_steps=2).frames
    assert torch.equal(out[:, :, :1], ours.encode_image(image, 32, 64))  # frame 0 is exactly the image's latent


def test_last_image_is_refused(ti2v):
    _, _, ours = ti2v
    with pytest.raises(ValueError, match=r"wan2.2-ti2v\) does not take last_image="):
        ours("a red circle", image=W.picture(32, 64, 1), last_image=W.picture(32, 64, 2), **SIZE)


def test_continuation_and_long_video(ti2v, tmp_path):
    from vidgen.long_video import LongVideoConfig, generate_long_video

    _, _, ours = ti2v
    clip = ours("a red circle", **SIZE, num_inference_steps=2, seed=0, progress=False).frames[0]  # (5, H, W, 3)
    more = ours("a red circle", video=clip, context_frames=5, num_frames=9, height=32, width=64,
                num_inference_steps=2, seed=1, progress=False).frames
    assert more.shape == (1, 4, 32, 64, 3)
    result = generate_long_video(ours, "a red circle", tmp_path / "long.mp4",
                                 LongVideoConfig(segments=2, frames=9, context_frames=5, num_inference_steps=2,
                                                 seed=0, height=32, width=64), progress=False)
    assert result.frames_written == 9 + 4
