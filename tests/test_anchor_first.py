"""`anchor_first`: text-to-video as latent frame 0 alone (the image case, from the noise's own frame 0), then the clip
with that frame held clean — exactly the two calls it stands for; the model's config sets the default."""

import dataclasses

import numpy as np
import pytest
import torch

from tests.tiny_pipeline import tiny_vidgen_pipeline
from vidgen.pipeline import VideoPipeline


@pytest.fixture(scope="module")
def pipe():
    return tiny_vidgen_pipeline()


def noise(pipe, batch=2, frames=9, size=32, seed=5):
    shape = (batch, pipe.dit.config.in_dim, 1 + (frames - 1) // 4, size // 8, size // 8)  # (B, C, F, h, w)
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def test_is_an_image_then_the_clip_with_it_held_clean(pipe):
    x, prompts = noise(pipe), ["a red circle moves left", "a blue square"]
    kw = dict(num_frames=9, num_inference_steps=3, guidance_scale=3.0, progress=False, output_type="latent")
    out = pipe(prompts, latents=x.clone(), anchor_first=True, **kw).frames  # (B, C, F, h, w)
    anchor = pipe(prompts, latents=x[:, :, :1].clone(), **{**kw, "num_frames": 1}).frames
    rest = pipe(prompts, latents=x.clone(), context_latents=anchor, **kw).frames
    assert torch.equal(out[:, :, :1], anchor) and torch.equal(out, rest)
    plain = pipe(prompts, latents=x.clone(), **kw).frames
    assert not torch.allclose(out, plain)  # a different sampling, not the plain one


def test_returns_the_whole_clip_and_counts_both_passes(pipe):
    steps = []
    out = pipe("a red circle", num_frames=9, num_inference_steps=3, seed=1, progress=False, anchor_first=True,
               callback=steps.append)
    assert out.frames.shape == (1, 9, 32, 32, 3) and len(steps) == 6


def test_default_comes_from_the_model_config_and_is_off(pipe):
    assert pipe.config.anchor_first is False  # PipelineConfig default: other models (Wan) sample as before
    kw = dict(num_frames=5, num_inference_steps=2, seed=4, progress=False)
    on = VideoPipeline(pipe.dit, pipe.vae, pipe.text_encoder, dataclasses.replace(pipe.config, anchor_first=True))
    assert np.array_equal(on("a green triangle", **kw).frames, pipe("a green triangle", anchor_first=True, **kw).frames)
    assert np.array_equal(pipe("a green triangle", **kw).frames, on("a green triangle", anchor_first=False, **kw).frames)


def test_unused_for_images_and_when_a_first_frame_is_given(pipe):
    kw = dict(num_inference_steps=2, seed=4, progress=False)
    img = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    for extra in ({"num_frames": 1}, {"num_frames": 5, "image": img}):
        a = pipe("a green triangle", anchor_first=True, **kw, **extra).frames
        assert np.array_equal(a, pipe("a green triangle", **kw, **extra).frames)


def test_saved_and_loaded_with_the_model(pipe, tmp_path):
    on = VideoPipeline(pipe.dit, pipe.vae, pipe.text_encoder, dataclasses.replace(pipe.config, anchor_first=True))
    on.save_pretrained(tmp_path / "m")
    assert VideoPipeline.from_pretrained(tmp_path / "m", device="cpu").config.anchor_first is True
