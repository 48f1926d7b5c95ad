"""causal_vae.init: every residual block starts as its shortcut and the signal keeps its scale through the VAE."""

import torch

from causal_vae import CausalVAE
from causal_vae.config import preset
from causal_vae.init import init_for_training
from causal_vae.layers import AttentionBlock, ResidualBlock


def test_blocks_start_as_their_shortcut():
    vae = init_for_training(CausalVAE(preset("tiny")))
    seen = 0
    for m in vae.modules():
        if isinstance(m, ResidualBlock):
            x = torch.randn(1, m.conv1.in_channels, 3, 4, 4)
            assert torch.equal(m(x, [None] * 64), m.conv_shortcut(x))
            seen += 1
        elif isinstance(m, AttentionBlock):
            x = torch.randn(1, m.proj.in_channels, 3, 4, 4)
            assert torch.equal(m(x), x)
            seen += 1
    assert seen > 4


def test_a_static_video_starts_as_its_image_in_every_frame():
    torch.manual_seed(0)
    vae = init_for_training(CausalVAE(preset("tiny")))
    for p in vae.parameters():  # as if trained on images: every weight but the per-frame start is arbitrary
        p.data.add_(0.1 * torch.randn_like(p)) if p.dim() < 5 or p.shape[2] == 1 else None
    from causal_vae.init import start_per_frame_

    start_per_frame_(vae)
    image = torch.rand(1, 3, 1, 16, 16) * 2 - 1
    with torch.no_grad():
        one = vae.decode_raw(vae.posterior(image)[0])
        many = vae.decode_raw(vae.posterior(image.repeat(1, 1, 9, 1, 1))[0])
    assert many.shape[2] == 9
    torch.testing.assert_close(many, one.expand_as(many), atol=1e-5, rtol=1e-5)


def test_unit_gain_keeps_the_latent_scale_and_default_init_does_not():
    torch.manual_seed(0)
    video = torch.rand(2, 3, 5, 32, 32) * 2 - 1
    stds = {}
    for name in ("default", "unit"):
        vae = CausalVAE(preset("shapes"))
        if name == "unit":
            init_for_training(vae)
        with torch.no_grad():
            mu, _ = vae.posterior(video)
            stds[name] = mu.std().item()
    assert 0.2 < stds["unit"] < 3.0, stds
    # PyTorch's default init shrinks each conv's output variance three-fold; the latent is far off unit scale.
    assert stds["default"] < 0.7 * stds["unit"], stds
