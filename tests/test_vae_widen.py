"""causal_vae.widen: a widened decoder decodes exactly like the trained one, and its channel copies train apart."""

import pytest
import torch

from causal_vae import CausalVAE
from causal_vae.config import preset
from causal_vae.widen import widen_decoder
from vidgen.train.config import TrainConfig
from vidgen.train.vae_task import VAETask


def _trained_like(seed: int = 0) -> CausalVAE:
    """The tiny VAE with arbitrary (not init-shaped) weights everywhere, RMS-norm gains included."""
    torch.manual_seed(seed)
    vae = CausalVAE(preset("tiny")).eval()
    with torch.no_grad():
        for p in vae.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return vae


@pytest.mark.parametrize("width", [16, 24])
def test_widened_decoder_decodes_the_same(width):
    vae = _trained_like()
    wide = widen_decoder(vae, width, torch.Generator().manual_seed(1)).eval()
    assert wide.config.decoder_dim == width and vae.config.decoder_dim == 8
    assert wide.decoder.conv_out.in_channels == width and wide.decoder.conv_in.out_channels == width * 2
    z = torch.randn(2, 4, 3, 4, 4)
    with torch.no_grad():
        expected = vae.decode_raw(z)  # unclamped: the whole range is compared
        torch.testing.assert_close(wide.decode_raw(z), expected, atol=2e-5, rtol=1e-4)
        # Streaming still works on the wide decoder: latent frame by latent frame == one shot.
        parts = list(wide.stream_decode([z[:, :, :1], z[:, :, 1:]]))
        torch.testing.assert_close(torch.cat(parts, dim=2), wide.decode(z))
    for name, p in vae.state_dict().items():  # the encoder and the latent space are untouched
        if not name.startswith("decoder."):
            assert torch.equal(wide.state_dict()[name], p), name
    assert wide.config.latents_mean == vae.config.latents_mean and wide.config.latents_std == vae.config.latents_std


def test_channel_copies_get_different_gradients():
    wide = widen_decoder(_trained_like(), 16, torch.Generator().manual_seed(1))
    wide.decode_raw(torch.randn(1, 4, 2, 4, 4)).square().mean().backward()
    conv = wide.decoder.up_blocks[-1].resnets[0].conv1  # 16 output channels: copies c and c + 8
    g = conv.weight.grad
    assert g.abs().sum() > 0
    assert not torch.allclose(g[:8], g[8:]), "copies of a channel must not train in lockstep"


def test_widening_is_seeded_and_checked():
    vae = _trained_like()
    a = widen_decoder(vae, 16, torch.Generator().manual_seed(3)).state_dict()
    b = widen_decoder(vae, 16, torch.Generator().manual_seed(3)).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="multiple of the current decoder width 8"):
        widen_decoder(vae, 12)


def test_train_config_widens_the_loaded_vae(tmp_path):
    vae = _trained_like()
    vae.save_pretrained(tmp_path / "vae")
    config = TrainConfig.load({"task": "vae", "vae": str(tmp_path / "vae"), "widen_decoder": 16, "seed": 5,
                                "data": {"folder": "x"}})
    task = VAETask.build(config)
    assert task.vae.config.decoder_dim == 16
    again = VAETask.build(config)  # a resumed run rebuilds the same starting weights before loading its checkpoint
    assert all(torch.equal(p, q) for p, q in zip(task.vae.parameters(), again.vae.parameters()))
    with pytest.raises(ValueError, match="widen_decoder"):
        TrainConfig.load({"task": "dit", "widen_decoder": 16, "data": {"folder": "x"}})
