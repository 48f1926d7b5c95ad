"""A per-frame patch discriminator for the VAE's optional adversarial term (training only; never exported).

L1/L2 reconstruction makes a decoder paint the conditional mean where it is unsure, which softens edges and corners;
a discriminator that judges local patches of single frames penalises exactly that. Each frame of a clip is judged on
its own (B·T images), so the term sharpens frames and leaves temporal consistency to the reconstruction loss.

The objective is the non-saturating GAN loss, computed in one pass so the trainer's single optimizer and single
backward serve both players (`adversarial_losses`):
    discriminator: softplus(-D(real)) + softplus(D(fake.detach()))
    decoder:       softplus(-D'(fake)), D' = D with its weights detached, so this term moves only the decoder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.func import functional_call


@dataclass(frozen=True)
class DiscriminatorConfig:
    dim: int = 32  # channels of the first stage; each of the `stages` stride-2 stages doubles them
    stages: int = 3  # 64x64 frames → 8x8 logits, each seeing a 38-pixel patch
    in_channels: int = 3


class PatchDiscriminator(nn.Module):
    def __init__(self, config: DiscriminatorConfig = DiscriminatorConfig()):
        super().__init__()
        if config.dim < 1 or config.stages < 1:
            raise ValueError(f"discriminator dim and stages must be >= 1, got {config.dim}, {config.stages}")
        self.config = config
        layers: list[nn.Module] = []
        c_in = config.in_channels
        for k in range(config.stages):
            c_out = config.dim * 2 ** k
            layers.append(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1))
            if k > 0:  # not on the first stage, whose input is raw pixels
                layers.append(nn.GroupNorm(math.gcd(32, c_out), c_out))  # groups that divide any width
            layers.append(nn.LeakyReLU(0.2))
            c_in = c_out
        layers.append(nn.Conv2d(c_in, 1, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """video (B, C, T, H, W) in [-1, 1] → patch logits (B·T, 1, H / 2^stages, W / 2^stages)."""
        if video.ndim != 5 or video.shape[1] != self.config.in_channels:
            raise ValueError(f"expected a video (B, {self.config.in_channels}, T, H, W), got {tuple(video.shape)}")
        frames = rearrange(video, "b c t h w -> (b t) c h w")  # every frame judged on its own
        return self.net(frames)


def adversarial_losses(disc: PatchDiscriminator, real: torch.Tensor, fake: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """(decoder loss, discriminator loss), both scalars; see the module docstring. The decoder loss reaches only
    `fake`'s graph; the discriminator loss only the discriminator's weights."""
    frozen = {k: p.detach() for k, p in disc.named_parameters()} | dict(disc.named_buffers())
    g_loss = F.softplus(-functional_call(disc, frozen, (fake,)).float()).mean()
    d_loss = (F.softplus(-disc(real.detach()).float()).mean() + F.softplus(disc(fake.detach()).float()).mean())
    return g_loss, d_loss
