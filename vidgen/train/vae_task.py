"""The causal VAE's training objective: L1 (+ optional L2) reconstruction + KL to N(0, 1) (+ an optional adversarial
term from a per-frame patch discriminator, `vidgen.train.discriminator`), on the trainer's pixel clips.

A perceptual (LPIPS-style) term would need pretrained network weights, which cannot be had offline here, so there is
none. The VAE (and the discriminator, when there is one) is wrapped in `Reconstruction`, whose `forward` is the whole
differentiable pass, so that accelerate's DDP/FSDP wrapper sees it; the discriminator is trained beside the VAE by the
same optimizer and is not exported.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from vidgen.request import Geometry
from vidgen.train.config import TrainConfig
from vidgen.train.discriminator import DiscriminatorConfig, PatchDiscriminator, adversarial_losses
from vidgen.train.models import load_vae

STATS_BATCHES = 16


class Reconstruction(nn.Module):
    def __init__(self, vae: nn.Module, train_encoder: bool = True, disc: PatchDiscriminator | None = None):
        super().__init__()
        self.vae, self.train_encoder, self.disc = vae, train_encoder, disc
        if not train_encoder:
            vae.encoder.requires_grad_(False)
            vae.quant_conv.requires_grad_(False)

    def forward(self, video: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """video (B, 3, 1+4k, H, W), eps (B, z, 1+k, h, w) → (reconstruction like video, mu, logvar like eps), then,
        with a discriminator, its (decoder loss, discriminator loss)."""
        with torch.set_grad_enabled(self.train_encoder and torch.is_grad_enabled()):
            mu, logvar = self.vae.posterior(video)
        z = mu + torch.exp(0.5 * logvar) * eps.to(mu.dtype)
        recon = self.vae.decode_raw(z)
        if self.disc is None:
            return recon, mu, logvar
        return recon, mu, logvar, *adversarial_losses(self.disc, video, recon)


class VAETask:
    name = "vae"

    def __init__(self, config: TrainConfig, vae: nn.Module):
        self.config, self.vae = config, vae
        l = config.vae_loss
        disc = PatchDiscriminator(DiscriminatorConfig(dim=l.discriminator_dim)) if l.adversarial_weight > 0 else None
        self.model = Reconstruction(vae, config.train_vae_encoder, disc)

    @classmethod
    def build(cls, config: TrainConfig, models: dict | None = None) -> "VAETask":
        vae = (models or {}).get("vae")
        if vae is None:
            if not config.vae:
                raise ValueError("task vae needs `vae:` (a preset name to start fresh, or a folder to fine-tune)")
            vae = load_vae(config.vae)
        if config.widen_decoder is not None and config.widen_decoder != vae.config.decoder_dim:
            from causal_vae.widen import widen_decoder

            vae = widen_decoder(vae, config.widen_decoder, torch.Generator().manual_seed(config.seed))
        return cls(config, vae.float())

    @property
    def factors(self) -> tuple[int, int]:
        c = self.vae.config
        return c.temporal_compression, c.spatial_compression

    def trainable(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def to(self, device) -> None:
        pass

    def loss(self, modules: dict, batch: dict, gen: torch.Generator, device) -> torch.Tensor:
        video = batch["video"].to(device)
        c = self.vae.config
        b, _, t, h, w = video.shape
        z_shape = Geometry(c.z_dim, c.temporal_compression, c.spatial_compression).latent_shape(b, t, h, w)
        eps = torch.randn(z_shape, generator=gen).to(device)
        recon, mu, logvar, *adversarial = modules["model"](video, eps)
        l = self.config.vae_loss
        err = recon.float() - video.float()
        l1, l2 = err.abs().mean(), err.square().mean()
        kl = 0.5 * (mu.float() ** 2 + logvar.float().exp() - 1.0 - logvar.float()).mean()  # per latent element
        loss = l.l1_weight * l1 + l.l2_weight * l2 + l.kl_weight * kl
        if adversarial:
            # Both players' terms carry the weight: the optimizer is Adam (per-weight scale-free), and a small
            # discriminator gradient keeps the global gradient clipping about the VAE's own gradients.
            g_loss, d_loss = adversarial
            loss = loss + l.adversarial_weight * (g_loss + d_loss)
        return loss

    @torch.no_grad()
    def export(self, folder: Path, modules: dict, batches=None, buckets=()) -> None:
        """Save the VAE with latent statistics measured on up to STATS_BATCHES training batches, so that its
        normalised latents have zero mean and unit variance per channel — what the DiT trained on them expects.
        With the encoder frozen the latent space has not changed, so the statistics it came with are kept."""
        vae = modules["model"].vae
        if batches is not None and self.config.train_vae_encoder:
            mus = []
            for _, batch in zip(range(STATS_BATCHES), batches):
                mus.append(vae.posterior(batch["video"].to(vae.device))[0].float().transpose(0, 1).flatten(1))
            mu = torch.cat(mus, dim=1)  # (z_dim, N)
            config = dataclasses.replace(vae.config, latents_mean=tuple(mu.mean(1).tolist()),
                                         latents_std=tuple(mu.std(1).clamp_min(1e-6).tolist()))
            fresh = type(vae)(config)
            fresh.load_state_dict(vae.state_dict())  # the statistics live in the config, not the weights
            vae = fresh
        vae.save_pretrained(folder / "vae", overwrite=True)

    def preview(self, folder: Path, step: int, modules: dict, bucket) -> list[Path]:
        return []  # reconstructions are judged by the loss; nothing to sample
