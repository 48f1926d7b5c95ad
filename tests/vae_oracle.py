"""Shared helpers for the VAE tests: a tiny random diffusers AutoencoderKLWan (the oracle) and our copy of it."""

from __future__ import annotations

import torch

from causal_vae import CausalVAE
from causal_vae.config import VAEConfig, preset


def tiny_diffusers_vae(cfg: VAEConfig, seed: int = 0):
    """A diffusers AutoencoderKLWan of `cfg` with every parameter perturbed, so no layer is trivially zero or identity.

    RMS-norm gammas start at 1 and biases at 0 (and Wan zero-initialises some projections); random offsets make each
    of them matter. The decoder's last conv is scaled down so decoded pixels stay mostly inside the [-1, 1] clamp.
    """
    from diffusers import AutoencoderKLWan

    torch.manual_seed(seed)
    ref = AutoencoderKLWan(
        base_dim=cfg.base_dim, decoder_base_dim=cfg.decoder_base_dim, z_dim=cfg.z_dim, dim_mult=list(cfg.dim_mult),
        num_res_blocks=cfg.num_res_blocks, attn_scales=list(cfg.attn_scales),
        temperal_downsample=list(cfg.temporal_downsample),
        latents_mean=list(cfg.latents_mean), latents_std=list(cfg.latents_std), **wan22_kwargs(cfg),
    ).eval()  # fmt: skip
    perturb_vae_(ref)
    return ref


def wan22_kwargs(cfg: VAEConfig) -> dict:
    """diffusers' arguments for the Wan 2.2 structure (channels counted after patching), or none for Wan 2.1's."""
    if not cfg.residual and cfg.patch_size == 1:
        return {}
    return dict(is_residual=cfg.residual, patch_size=cfg.patch_size, in_channels=cfg.pixel_channels,
                out_channels=cfg.out_channels * cfg.patch_size**2, scale_factor_spatial=cfg.spatial_compression)


@torch.no_grad()
def perturb_vae_(vae) -> None:
    """Offset every parameter of a diffusers AutoencoderKLWan in place, drawing from torch's global generator."""
    for name, p in vae.named_parameters():
        if name.endswith("gamma"):
            p.copy_(1.0 + 0.3 * torch.randn_like(p))
        elif name.endswith("bias"):
            p.copy_(0.1 * torch.randn_like(p))
        else:
            p.add_(0.05 * torch.randn_like(p) * p.std().clamp_min(0.1))
    vae.decoder.conv_out.weight.mul_(0.2)  # keep pixels mostly inside the [-1, 1] clamp


def diffusers_normalised_mean(ref, video: torch.Tensor) -> torch.Tensor:
    cfg = ref.config
    mean = torch.tensor(cfg.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(cfg.latents_std).view(1, -1, 1, 1, 1)
    with torch.no_grad():
        return (ref.encode(video).latent_dist.mean - mean) / std


def diffusers_decode_normalised(ref, z: torch.Tensor) -> torch.Tensor:
    cfg = ref.config
    mean = torch.tensor(cfg.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(cfg.latents_std).view(1, -1, 1, 1, 1)
    with torch.no_grad():
        return ref.decode(z * std + mean).sample


def tiny_vae(seed: int = 0, name: str = "tiny") -> CausalVAE:
    """Our tiny VAE (preset `name`) with the perturbed random weights of the oracle (no round trip through disk)."""
    cfg = preset(name)
    vae = CausalVAE(cfg).eval()
    vae.load_state_dict(tiny_diffusers_vae(cfg, seed).state_dict())
    return vae


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def assert_original_file_loads_the_same(original: dict, path, cfg: VAEConfig, reference: CausalVAE) -> None:
    """`original` (a state dict in Wan's .pth layout) saved to `path` loads to exactly `reference`'s weights."""
    torch.save(original, path)
    loaded = CausalVAE.from_pretrained(path, config=cfg)
    a, b = loaded.state_dict(), reference.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
