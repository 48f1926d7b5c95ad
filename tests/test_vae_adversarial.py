"""The VAE objective's optional adversarial term: a per-frame patch discriminator trained beside the decoder."""

import dataclasses

import pytest
import torch

from causal_vae import CausalVAE
from causal_vae.config import preset
from vidgen.train.config import DataConfig, TrainConfig, VAELossConfig
from vidgen.train.discriminator import DiscriminatorConfig, PatchDiscriminator, adversarial_losses
from vidgen.train.vae_task import VAETask


def _task(weight: float) -> VAETask:
    torch.manual_seed(0)
    config = TrainConfig(task="vae", data=DataConfig(folder="x"),
                         vae_loss=VAELossConfig(l1_weight=1.0, l2_weight=1.0, kl_weight=0.0, adversarial_weight=weight,
                                                discriminator_dim=8))
    return VAETask(config, CausalVAE(preset("tiny")))


def _grads(task: VAETask, video: torch.Tensor) -> dict[str, torch.Tensor]:
    task.model.zero_grad(set_to_none=True)
    task.loss({"model": task.model}, {"video": video}, torch.Generator().manual_seed(1), "cpu").backward()
    return {k: p.grad.clone() for k, p in task.model.named_parameters() if p.grad is not None}


def test_discriminator_judges_every_frame_in_patches():
    disc = PatchDiscriminator(DiscriminatorConfig(dim=8))
    assert disc(torch.zeros(2, 3, 5, 64, 64)).shape == (10, 1, 8, 8)  # (B·T, 1, H/8, W/8)
    with pytest.raises(ValueError, match=r"expected a video \(B, 3, T, H, W\)"):
        disc(torch.zeros(2, 3, 64, 64))
    assert PatchDiscriminator(DiscriminatorConfig(dim=7))(torch.zeros(1, 3, 1, 32, 32)).shape == (1, 1, 4, 4)
    with pytest.raises(ValueError, match="dim and stages must be >= 1"):
        PatchDiscriminator(DiscriminatorConfig(dim=0))


def test_each_player_moves_only_its_own_weights():
    torch.manual_seed(0)
    disc = PatchDiscriminator(DiscriminatorConfig(dim=8))
    real = torch.rand(1, 3, 2, 16, 16) * 2 - 1
    fake = (torch.rand(1, 3, 2, 16, 16) * 2 - 1).requires_grad_()
    g_loss, d_loss = adversarial_losses(disc, real, fake)
    g_loss.backward(retain_graph=True)
    assert fake.grad is not None and fake.grad.abs().sum() > 0  # the decoder's term reaches the reconstruction
    assert all(p.grad is None for p in disc.parameters())  # ... and not the discriminator
    fake.grad = None
    d_loss.backward()
    assert fake.grad is None  # the discriminator's term does not reach the reconstruction
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in disc.parameters())


def test_weight_zero_is_the_plain_objective_and_weight_adds_the_term():
    video = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    plain, adv = _task(0.0), _task(0.5)
    assert plain.model.disc is None and not any(k.startswith("disc.") for k in plain.model.state_dict())
    adv.model.vae.load_state_dict(plain.model.vae.state_dict())
    g_plain, g_adv = _grads(plain, video), _grads(adv, video)
    # the discriminator learns (its gradient is the weighted discriminator loss's) ...
    disc = {k: v for k, v in g_adv.items() if k.startswith("disc.")}
    assert disc and all(v.abs().sum() > 0 for v in disc.values())
    # ... and the decoder's gradient is the plain one plus the adversarial term's
    dec = [k for k in g_plain if k.startswith("vae.decoder.")]
    assert dec and max((g_adv[k] - g_plain[k]).abs().max().item() for k in dec) > 1e-6
    assert g_plain.keys() == {k for k in g_adv if not k.startswith("disc.")}


def test_adversarial_term_is_validated():
    with pytest.raises(ValueError, match="adversarial_weight must be >= 0"):
        TrainConfig(task="vae", data=DataConfig(folder="x"), vae_loss=VAELossConfig(adversarial_weight=-1.0))
    assert dataclasses.asdict(VAELossConfig())["adversarial_weight"] == 0.0  # off unless asked for


def test_a_run_with_the_discriminator_checkpoints_it_resumes_and_exports_the_vae_alone(tmp_path):
    from safetensors.torch import load_file

    from causal_vae import CausalVAE
    from tests.train_fixtures import media_folder
    from vidgen.train.trainer import train

    media = media_folder(tmp_path / "media", videos=2, images=0, corrupt=False, size=(16, 16),
                         frames=5)
    raw = {"task": "vae", "vae": "tiny", "output_dir": str(tmp_path / "run"), "max_steps": 4, "save_every": 2,
           "log_every": 2, "data": {"folder": str(media), "buckets": [[5, 16, 16]], "batch_size": 1},
           "optim": {"lr": 1e-3, "warmup_steps": 0, "schedule": "constant"},
           "vae_loss": {"adversarial_weight": 0.1, "discriminator_dim": 8}, "ema_decay": 0.9}
    straight = train(TrainConfig.load(raw), progress=False)
    weights = load_file(str(tmp_path / "run" / "checkpoints" / "step-00000004" / "model.safetensors"))
    assert any(k.startswith("disc.") for k in weights)
    # resumed from step 2, it ends on the same weights, discriminator included
    resumed_dir = tmp_path / "resumed"
    import shutil

    shutil.copytree(tmp_path / "run" / "checkpoints" / "step-00000002", resumed_dir / "checkpoints" / "step-00000002")
    resumed = train(TrainConfig.load({**raw, "output_dir": str(resumed_dir)}), resume=True, progress=False)
    assert resumed.step == straight.step == 4 and len(resumed.losses) == 2
    again = load_file(str(resumed_dir / "checkpoints" / "step-00000004" / "model.safetensors"))
    assert max((weights[k] - again[k]).abs().max().item() for k in weights) <= 1e-6
    vae = CausalVAE.from_pretrained(tmp_path / "run" / "final" / "vae")  # strict load: no discriminator in it
    assert vae.encode(torch.zeros(1, 3, 5, 16, 16)).shape == (1, vae.config.z_dim, 2, 2, 2)
