"""The Wan 2.2 VAE (residual levels, 2×2 patches, 48 latent channels): parity with diffusers' AutoencoderKLWan
(is_residual=True, patch_size=2) on the same tiny random weights, its config and both checkpoint layouts."""

import dataclasses

import pytest
import torch
from vae_oracle import (
    assert_original_file_loads_the_same, diffusers_decode_normalised, diffusers_normalised_mean, rel_err,
    tiny_diffusers_vae,
)

from causal_vae import CausalVAE
from causal_vae.config import WAN22_LATENTS_MEAN, WAN22_LATENTS_STD, VAEConfig, preset
from causal_vae.convert import config_from_diffusers, config_to_diffusers, key_table, ours_to_original
from causal_vae.residual import patchify, unpatchify

CFG = preset("tiny-wan2.2")


@pytest.fixture(scope="module")
def oracle_folder(tmp_path_factory):
    ref = tiny_diffusers_vae(CFG)
    folder = tmp_path_factory.mktemp("oracle22")
    ref.save_pretrained(folder)
    return ref, folder


@pytest.mark.parametrize("frames", [9, 1])  # a clip of 1+4k frames, and a single image
def test_encode_decode_match_diffusers(oracle_folder, frames):
    ref, folder = oracle_folder
    vae = CausalVAE.from_pretrained(folder)
    assert vae.config == CFG
    video = torch.rand(2, 3, frames, 32, 48) * 2 - 1
    z = vae.encode(video)
    latent_frames = 1 + (frames - 1) // 4
    assert z.shape == (2, CFG.z_dim, latent_frames, 2, 3)  # 16× in space
    assert rel_err(z, diffusers_normalised_mean(ref, video)) < 1e-4

    z = torch.randn(2, CFG.z_dim, latent_frames, 2, 3)
    x = vae.decode(z)
    expected = diffusers_decode_normalised(ref, z)
    assert x.shape == expected.shape == (2, 3, frames, 32, 48)
    assert (expected.abs() < 1).float().mean() > 0.5, "oracle output mostly clamped: the comparison would be weak"
    assert rel_err(x, expected) < 1e-4


def test_posterior_and_raw_decode_match_diffusers(oracle_folder):
    """The training API runs the whole clip in one step (not frame 0, then groups of 4) and still matches."""
    ref, folder = oracle_folder
    vae = CausalVAE.from_pretrained(folder)
    video = torch.rand(1, 3, 5, 32, 32) * 2 - 1
    mu, logvar = vae.posterior(video)
    with torch.no_grad():
        dist = ref.encode(video).latent_dist
        expected = ref.decode(mu).sample
    assert rel_err(mu, dist.mean) < 1e-4 and rel_err(logvar, dist.logvar) < 1e-4
    assert rel_err(vae.decode_raw(mu).clamp(-1, 1), expected) < 1e-4


def test_patchify_channel_order_and_inverse():
    """Channel c·4 + 2·q + r holds row r, column q of each 2×2 patch: the column offset comes first."""
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(1, 2, 1, 4, 4)
    p = patchify(x, 2)
    assert p.shape == (1, 8, 1, 2, 2)
    for c in range(2):
        for q in range(2):
            for r in range(2):
                torch.testing.assert_close(p[0, c * 4 + 2 * q + r, 0], x[0, c, 0, r::2, q::2], atol=0, rtol=0)
    torch.testing.assert_close(unpatchify(p, 2), x, atol=0, rtol=0)
    from diffusers.models.autoencoders.autoencoder_kl_wan import patchify as theirs

    torch.testing.assert_close(p, theirs(x, 2), atol=0, rtol=0)


def test_wan22_names_and_shapes_match_diffusers():
    """The real Wan 2.2 config: our parameters equal diffusers' in names and shapes; the original table covers them."""
    from diffusers import AutoencoderKLWan

    cfg = preset("wan2.2")
    kwargs = {k: v for k, v in config_to_diffusers(cfg).items() if k != "_class_name"}
    with torch.device("meta"):
        ours = CausalVAE(cfg).state_dict()
        theirs = AutoencoderKLWan(**kwargs).state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}
    table = key_table(cfg, ours.keys())
    assert len(table) == len(ours)
    assert (cfg.spatial_compression, cfg.temporal_compression, cfg.z_dim) == (16, 4, 48)


# Wan-AI/Wan2.2-TI2V-5B-Diffusers vae/config.json, the keys that define the model.
PUBLISHED = {
    "_class_name": "AutoencoderKLWan", "attn_scales": [], "base_dim": 160, "decoder_base_dim": 256,
    "dim_mult": [1, 2, 4, 4], "dropout": 0.0, "in_channels": 12, "is_residual": True,
    "latents_mean": list(WAN22_LATENTS_MEAN), "latents_std": list(WAN22_LATENTS_STD), "num_res_blocks": 2,
    "out_channels": 12, "patch_size": 2, "scale_factor_spatial": 16, "scale_factor_temporal": 4,
    "temperal_downsample": [False, True, True], "z_dim": 48, "clip_output": False,
}  # fmt: skip


def test_published_config_is_the_preset():
    cfg = config_from_diffusers(PUBLISHED, "config.json")
    assert cfg == preset("wan2.2") and cfg.in_channels == 3 and cfg.pixel_channels == 12
    assert WAN22_LATENTS_MEAN[:3] == (-0.2289, -0.0052, -0.1323) and WAN22_LATENTS_STD[-2:] == (0.7468, 0.7744)
    back = config_to_diffusers(cfg)
    assert all(back[k] == v for k, v in PUBLISHED.items() if k != "clip_output"), back


def test_inconsistent_diffusers_config_is_refused():
    with pytest.raises(ValueError, match="scale_factor_spatial is 8"):
        config_from_diffusers({**PUBLISHED, "scale_factor_spatial": 8}, "config.json")
    with pytest.raises(ValueError, match="in_channels 10 is not a multiple"):
        config_from_diffusers({**PUBLISHED, "in_channels": 10}, "config.json")


def test_residual_widths_are_checked():
    with pytest.raises(ValueError, match="residual encoder level 1"):
        dataclasses.replace(CFG, dim_mult=(1, 3, 3, 3))
    with pytest.raises(ValueError, match="patch_size"):
        dataclasses.replace(CFG, patch_size=0)


def test_original_layout_loads_same_weights(oracle_folder, tmp_path):
    """A tiny state dict in the layout of `Wan2.2_VAE.pth` (per-level nn.Sequential lists) loads to the same model."""
    ref, folder = oracle_folder
    from_diffusers = CausalVAE.from_pretrained(folder)
    original = ours_to_original(ref.state_dict(), CFG)
    n = CFG.num_res_blocks
    for key in ("conv1.weight", "conv2.bias", "encoder.conv1.weight", "encoder.head.2.bias",
                "encoder.downsamples.0.downsamples.0.residual.0.gamma",
                "encoder.downsamples.1.downsamples.0.shortcut.weight",
                f"encoder.downsamples.1.downsamples.{n}.time_conv.weight",
                f"encoder.downsamples.0.downsamples.{n}.resample.1.weight",
                "decoder.upsamples.0.upsamples.0.residual.6.weight",
                f"decoder.upsamples.0.upsamples.{n + 1}.time_conv.weight",
                f"decoder.upsamples.2.upsamples.{n + 1}.resample.1.bias",
                "decoder.upsamples.3.upsamples.0.shortcut.weight", "decoder.middle.1.to_qkv.weight"):  # fmt: skip
        assert key in original, key
    assert_original_file_loads_the_same(original, tmp_path / "Wan2.2_VAE.pth", CFG, from_diffusers)


def test_original_checkpoint_kind_is_recognised():
    from causal_vae.io import WeightsError, _guess_original_config

    conv = {"encoder.conv1.weight": torch.zeros(160, 12, 3, 3, 3)}
    assert _guess_original_config(conv, "Wan2.2_VAE.pth") == preset("wan2.2")
    assert _guess_original_config({"encoder.conv1.weight": torch.zeros(96, 3, 3, 3, 3)}, "x.pth") == preset("wan2.1")
    with pytest.raises(WeightsError, match=r"\(64, 3\).*config=VAEConfig"):
        _guess_original_config({"encoder.conv1.weight": torch.zeros(64, 3, 3, 3, 3)}, "x.pth")


def test_own_folder_round_trip(oracle_folder, tmp_path):
    _, folder = oracle_folder
    vae = CausalVAE.from_pretrained(folder)
    vae.save_pretrained(tmp_path / "ours")
    again = CausalVAE.from_pretrained(tmp_path / "ours")
    assert again.config == vae.config and isinstance(again.config, VAEConfig) and again.config.residual
    video = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    torch.testing.assert_close(again.encode(video), vae.encode(video), atol=0, rtol=0)


def test_widening_a_residual_decoder_is_refused(oracle_folder):
    from causal_vae.widen import widen_decoder

    with pytest.raises(ValueError, match="residual"):
        widen_decoder(CausalVAE(CFG), 2 * CFG.decoder_dim)


def test_pipeline_geometry_reads_the_compression():
    """The pipeline's shape rules come from the config: 16× in space, 4× in time, 48 channels."""
    from types import SimpleNamespace

    from vidgen.request import Geometry

    with torch.device("meta"):
        vae = CausalVAE(preset("wan2.2"))
    dit = SimpleNamespace(config=SimpleNamespace(in_dim=48, out_dim=48, patch_size=(1, 2, 2)))
    g = Geometry.of(dit, vae)
    assert (g.spatial, g.temporal, g.multiple) == (16, 4, 32)
    assert g.latent_shape(1, 121, 704, 1280) == (1, 48, 31, 44, 80)
