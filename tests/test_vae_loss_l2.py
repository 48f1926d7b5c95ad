"""The VAE objective's optional L2 term (added for the shapes recipe): loss = l1·L1 + l2·L2 + kl·KL."""

import dataclasses

import torch

from causal_vae import CausalVAE
from causal_vae.config import preset
from vidgen.train.config import DataConfig, TrainConfig, VAELossConfig
from vidgen.train.vae_task import VAETask


def test_l2_weight_adds_the_mean_squared_error():
    torch.manual_seed(0)
    vae = CausalVAE(preset("tiny"))
    video = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    losses = {}
    for l1, l2 in ((1.0, 0.0), (0.0, 1.0), (1.0, 3.0)):
        config = TrainConfig(task="vae", data=DataConfig(folder="x"),
                             vae_loss=VAELossConfig(l1_weight=l1, l2_weight=l2, kl_weight=0.0))
        task = VAETask(config, vae)
        losses[(l1, l2)] = task.loss({"model": task.model}, {"video": video}, torch.Generator().manual_seed(1), "cpu")
    torch.testing.assert_close(losses[(1.0, 3.0)], losses[(1.0, 0.0)] + 3 * losses[(0.0, 1.0)])
    assert dataclasses.asdict(VAELossConfig())["l2_weight"] == 0.0  # off unless asked for
