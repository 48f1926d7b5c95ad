"""Parity with the oracle: a tiny random diffusers Wan 2.1 pipeline, saved with save_pretrained, loaded by
VideoPipeline.from_pretrained, must give the frames diffusers' WanPipeline gives on the same latents (one Euler step
with FlowMatchEulerDiscreteScheduler, whose σ grid differs from ours only beyond the first step)."""

import json

import numpy as np
import pytest
import torch

from tests.tiny_pipeline import tiny_tokenizer, tiny_umt5
from tests.vae_oracle import perturb_vae_
from vidgen.pipeline import VideoPipeline

diffusers = pytest.importorskip("diffusers")

Z_DIM, TEXT_DIM = 4, 32


def _tiny_diffusers_wan():
    torch.manual_seed(0)
    transformer = diffusers.WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=Z_DIM, out_channels=Z_DIM,
        text_dim=TEXT_DIM, freq_dim=32, ffn_dim=48, num_layers=2, cross_attn_norm=True, eps=1e-6, rope_max_seq_len=32,
    ).eval()
    vae = diffusers.AutoencoderKLWan(
        base_dim=8, z_dim=Z_DIM, dim_mult=[1, 2, 2, 2], num_res_blocks=1, temperal_downsample=[False, True, True],
        latents_mean=[0.1, -0.2, 0.3, 0.0], latents_std=[1.5, 0.8, 1.2, 2.0],
    ).eval()
    with torch.no_grad():  # perturb: no zero-initialised layer may hide a mistake
        for p in transformer.parameters():
            p.add_(0.3 * torch.randn_like(p))
    perturb_vae_(vae)
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    return diffusers.WanPipeline(tokenizer=tiny_tokenizer(), text_encoder=tiny_umt5(d_model=TEXT_DIM), vae=vae,
                                 transformer=transformer, scheduler=scheduler)


@pytest.fixture(scope="module")
def pipes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wan") / "tiny-wan2.1-t2v"
    oracle = _tiny_diffusers_wan()
    oracle.save_pretrained(folder)
    oracle.set_progress_bar_config(disable=True)
    return oracle, VideoPipeline.from_pretrained(folder, device="cpu", dtype=torch.float32)


@pytest.mark.parametrize("num_frames, guidance", [(5, 1.0), (5, 4.0), (1, 4.0)])
def test_one_step_matches_diffusers_wan_pipeline(pipes, num_frames, guidance):
    oracle, ours = pipes
    latents = torch.randn(1, Z_DIM, 1 + (num_frames - 1) // 4, 4, 6, generator=torch.Generator().manual_seed(1))
    kw = dict(prompt="a red circle moves left", negative_prompt="blue square", num_frames=num_frames, height=32,
              width=48, num_inference_steps=1, guidance_scale=guidance, output_type="np")
    with torch.no_grad():
        ref = oracle(latents=latents.clone(), **kw).frames
    got = ours(latents=latents.clone(), progress=False, **kw).frames
    assert got.shape == ref.shape == (1, num_frames, 32, 48, 3)
    assert ref.std() > 0.01  # not a degenerate picture
    np.testing.assert_allclose(got, ref, atol=1e-3)


def test_scheduler_shift_is_read(pipes, tmp_path):
    assert pipes[1].config.shift == 3.0
    from vidgen.model_folder import read_diffusers_pipeline

    (tmp_path / "scheduler").mkdir()
    (tmp_path / "scheduler" / "scheduler_config.json").write_text(json.dumps(
        {"_class_name": "UniPCMultistepScheduler", "flow_shift": 5.0, "use_flow_sigmas": True}))
    # Wan's own scheduler, which feeds the DiT whole timesteps
    assert read_diffusers_pipeline(tmp_path) == {"shift": 5.0, "sampler": "unipc", "integer_timesteps": True}


def test_latents_match_and_guidance_matters(pipes):
    """The frames above pass through a VAE that compresses differences; in latent space the check is sharper."""
    oracle, ours = pipes
    latents = torch.randn(1, Z_DIM, 2, 4, 6, generator=torch.Generator().manual_seed(2))
    kw = dict(prompt="a red circle moves left", negative_prompt="blue square", num_frames=5, height=32, width=48,
              num_inference_steps=1, output_type="latent")
    out = {}
    for g in (1.0, 4.0):
        with torch.no_grad():
            ref = oracle(latents=latents.clone(), guidance_scale=g, **kw).frames
        out[g] = ours(latents=latents.clone(), guidance_scale=g, progress=False, **kw).frames
        torch.testing.assert_close(out[g], ref, atol=1e-3, rtol=1e-4)
    assert (out[4.0] - out[1.0]).abs().max() > 0.05  # the text and the guidance really act


def test_wan_folder_resaved_in_our_format_gives_the_same_latents(pipes, tmp_path):
    import vidgen

    _, ours = pipes
    resaved = vidgen.VideoPipeline.from_pretrained(ours.save_pretrained(tmp_path / "ours"), device="cpu")
    assert resaved.config == ours.config
    latents = torch.randn(1, Z_DIM, 2, 4, 6, generator=torch.Generator().manual_seed(3))
    kw = dict(prompt="a blue square", num_frames=5, height=32, width=48, num_inference_steps=2, guidance_scale=3.0,
              output_type="latent", progress=False)
    torch.testing.assert_close(resaved(latents=latents.clone(), **kw).frames, ours(latents=latents.clone(), **kw).frames)
