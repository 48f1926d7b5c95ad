"""Parity with the oracle (diffusers AutoencoderKLWan) on the same tiny random weights, through every loading path."""

import dataclasses

import pytest
import torch
from vae_oracle import (
    assert_original_file_loads_the_same, diffusers_decode_normalised, diffusers_normalised_mean, rel_err,
    tiny_diffusers_vae,
)

from causal_vae import CausalVAE
from causal_vae.config import preset
from causal_vae.convert import config_to_diffusers, ours_to_original


@pytest.fixture(scope="module")
def oracle_folder(tmp_path_factory):
    ref = tiny_diffusers_vae(preset("tiny"))
    folder = tmp_path_factory.mktemp("oracle")
    ref.save_pretrained(folder)
    return ref, folder


def test_encode_decode_match_diffusers(oracle_folder):
    ref, folder = oracle_folder
    vae = CausalVAE.from_pretrained(folder)
    video = torch.rand(2, 3, 9, 32, 48) * 2 - 1
    z = vae.encode(video)
    assert z.shape == (2, 4, 3, 4, 6)
    assert rel_err(z, diffusers_normalised_mean(ref, video)) < 1e-4

    z = torch.randn(2, 4, 3, 4, 6)
    x = vae.decode(z)
    expected = diffusers_decode_normalised(ref, z)
    assert x.shape == expected.shape == (2, 3, 9, 32, 48)
    assert (expected.abs() < 1).float().mean() > 0.5, "oracle output mostly clamped: the comparison would be weak"
    assert rel_err(x, expected) < 1e-4


def test_posterior_and_raw_decode_match_diffusers(oracle_folder):
    ref, folder = oracle_folder
    vae = CausalVAE.from_pretrained(folder)
    video = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    mu, logvar = vae.posterior(video)  # whole clip in one step, not grouped like encode
    with torch.no_grad():
        dist = ref.encode(video).latent_dist
    assert rel_err(mu, dist.mean) < 1e-4 and rel_err(logvar, dist.logvar) < 1e-4
    torch.testing.assert_close(vae.normalize(mu), vae.encode(video), atol=1e-5, rtol=0)
    torch.testing.assert_close(vae.denormalize(vae.normalize(mu)), mu, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        expected = ref.decode(mu).sample
    assert rel_err(vae.decode_raw(mu).clamp(-1, 1), expected) < 1e-4


def test_training_api_is_differentiable(oracle_folder):
    _, folder = oracle_folder
    vae = CausalVAE.from_pretrained(folder)
    video = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    mu, logvar = vae.posterior(video)
    recon = vae.decode_raw(mu + torch.randn_like(mu) * (0.5 * logvar).exp())
    loss = (recon - video).pow(2).mean() + 1e-3 * (mu.pow(2) + logvar.exp() - logvar).mean()
    loss.backward()
    assert vae.encoder.conv_in.weight.grad is not None and vae.decoder.conv_out.weight.grad.abs().sum() > 0


def test_original_layout_loads_same_weights(oracle_folder, tmp_path):
    ref, folder = oracle_folder
    from_diffusers = CausalVAE.from_pretrained(folder)
    cfg = from_diffusers.config
    original = ours_to_original(ref.state_dict(), cfg)
    # A few names as the original Wan 2.1 code has them (flat nn.Sequential indices).
    for key in ("conv1.weight", "conv2.bias", "encoder.conv1.weight", "encoder.downsamples.0.residual.0.gamma",
                "encoder.downsamples.1.resample.1.weight", "encoder.middle.1.to_qkv.weight", "encoder.head.2.bias",
                "decoder.upsamples.2.time_conv.weight", "decoder.middle.2.residual.6.weight"):  # fmt: skip
        assert key in original, key
    assert_original_file_loads_the_same(original, tmp_path / "Wan2.1_VAE.pth", cfg, from_diffusers)


def test_wan21_names_match_diffusers_and_original():
    """The real Wan 2.1 config: our parameter names and shapes equal diffusers', and the original table covers them."""
    from diffusers import AutoencoderKLWan

    from causal_vae.convert import key_table

    with torch.device("meta"):
        ours = CausalVAE(preset("wan2.1")).state_dict()
        theirs = AutoencoderKLWan().state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}
    table = key_table(preset("wan2.1"), ours.keys())
    assert len(table) == len(ours)
    assert "encoder.downsamples.5.time_conv.weight" in table and "decoder.upsamples.3.time_conv.weight" in table
    assert "decoder.upsamples.11.resample.1.weight" in table and "decoder.upsamples.14.residual.6.bias" in table


def test_wider_decoder_matches_diffusers(tmp_path):
    """diffusers' `decoder_base_dim` (a decoder wider than the encoder) round-trips and decodes the same."""
    cfg = dataclasses.replace(preset("tiny"), decoder_base_dim=12)
    ref = tiny_diffusers_vae(cfg, seed=1)
    ref.save_pretrained(tmp_path / "wide")
    vae = CausalVAE.from_pretrained(tmp_path / "wide")
    assert vae.config.decoder_base_dim == 12 and vae.decoder.conv_in.weight.shape[0] == 12 * cfg.dim_mult[-1]
    assert vae.encoder.conv_in.weight.shape[0] == cfg.base_dim
    video = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    assert rel_err(vae.encode(video), diffusers_normalised_mean(ref, video)) < 1e-4
    z = torch.randn(1, 4, 2, 2, 2)
    assert rel_err(vae.decode(z), diffusers_decode_normalised(ref, z)) < 1e-4
    vae.save_pretrained(tmp_path / "ours")
    again = CausalVAE.from_pretrained(tmp_path / "ours")
    assert again.config == vae.config
    assert config_to_diffusers(cfg)["decoder_base_dim"] == 12 and "decoder_base_dim" not in config_to_diffusers(
        preset("tiny"))


def test_decoder_base_dim_must_be_positive():
    with pytest.raises(ValueError, match="decoder_base_dim"):
        dataclasses.replace(preset("tiny"), decoder_base_dim=0)
