"""`flow.token_dropout`: single text tokens of the DiT's context become the empty caption's, at the configured rate,
from the task's generator; at 0 the context and the generator's draws are exactly those of caption dropout alone."""

import pytest
import torch

from tests.train_fixtures import tiny_text_encoder
from vidgen.train.config import TrainConfig
from vidgen.train.dit_task import DiTTask
from vidgen.train.models import load_dit
from vidgen.train.text_conditioner import TextConditioner


def task(token_dropout: float, text=None, text_dropout: float = 0.0) -> DiTTask:
    cfg = TrainConfig.load({"model": "tiny", "data": {"cache": "unused"},
                            "flow": {"text_dropout": text_dropout, "token_dropout": token_dropout}})
    return DiTTask(cfg, load_dit(cfg.model), None, text)


def cached_batch(b: int = 64, length: int = 12, dim: int = 8) -> dict:
    g = torch.Generator().manual_seed(1)
    null = torch.zeros(b, length, dim)
    null[:, 0] = 5.0  # the empty caption's EOS
    return {"context": torch.randn(b, length, dim, generator=g) + 10, "null_context": null}


def test_each_token_is_either_kept_or_the_empty_captions_at_the_rate():
    batch = cached_batch()
    ctx = task(0.25).context({}, batch, torch.Generator().manual_seed(0), "cpu")
    kept = (ctx == batch["context"]).all(-1)  # (B, L)
    dropped = (ctx == batch["null_context"]).all(-1)
    assert bool((kept ^ dropped).all())  # never a mix within one token
    assert 0.2 < dropped.float().mean().item() < 0.3  # 768 tokens at p = 0.25
    assert not bool(dropped.all(1).any())  # tokens, not whole captions (caption dropout is off here)


def test_off_is_caption_dropout_alone_and_draws_nothing_more():
    batch = cached_batch()
    g0, g1 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    ctx = task(0.0, text_dropout=0.5).context({}, batch, g0, "cpu")
    drop = torch.rand(64, generator=g1) < 0.5  # what caption dropout alone draws
    assert torch.equal(ctx, torch.where(drop[:, None, None], batch["null_context"], batch["context"]))
    assert torch.equal(torch.rand(4, generator=g0), torch.rand(4, generator=g1))  # the next draws (σ, ...) agree


def test_captions_encoded_on_the_fly_drop_to_the_empty_captions_tokens(tmp_path):
    text = TextConditioner.from_folder(tiny_text_encoder(tmp_path / "te"), load_dit("tiny").config.text_len)
    captions = ["a red square moving right"] * 32
    ctx = task(0.3, text).context({}, {"caption": captions}, torch.Generator().manual_seed(0), "cpu")
    full, null = text(captions[:1])[0], text([""])[0]  # (L, D) each
    kept = torch.isclose(ctx, full, atol=1e-6).all(-1)
    dropped = torch.isclose(ctx, null, atol=1e-6).all(-1) & ~torch.isclose(full, null, atol=1e-6).all(-1)
    real = ~torch.isclose(full, null, atol=1e-6).all(-1)  # positions where the caption differs from ""
    assert bool((kept | dropped).all())
    assert bool(dropped[:, real].any()) and bool(kept[:, real].any())


@pytest.mark.parametrize("p", [-0.1, 1.0])
def test_rate_outside_zero_to_one_is_a_clear_error(p):
    with pytest.raises(ValueError, match=r"flow.token_dropout must be in \[0, 1\)"):
        TrainConfig.load({"flow": {"token_dropout": p}})
