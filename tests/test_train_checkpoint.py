"""Checkpoints: atomic layout, last-K pruning, corrupt/partial detection with fallback, optimizer and RNG round trips."""

import json
import random

import numpy as np
import pytest
import torch

from vidgen.train import checkpoint as ckpt
from vidgen.train.schedule import lr_factor


def _save(manager, step):
    return manager.save(step, {"model": {"w": torch.full((3,), float(step))}}, {"step": step})


def test_save_keeps_last_k_and_latest_skips_corrupt_ones(tmp_path, caplog):
    m = ckpt.CheckpointManager(tmp_path, keep_last=3)
    for step in (1, 2, 3, 4):
        _save(m, step)
    assert [p.name for p in m.checkpoints()] == ["step-00000002", "step-00000003", "step-00000004"]
    assert not list(tmp_path.glob(".tmp-*"))
    tensors, state = ckpt.load(m.latest())
    assert state["step"] == 4 and torch.equal(tensors["model"]["w"], torch.full((3,), 4.0))

    # flip one byte of the newest weights: the manifest's sha256 catches it, the previous one is used
    f = tmp_path / "step-00000004" / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))
    assert m.latest().name == "step-00000003"
    assert "sha256" in caplog.text
    # a partial write (no manifest yet) of a later step is ignored too
    partial = tmp_path / "step-00000005"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"half")
    assert m.latest().name == "step-00000003"
    with pytest.raises(ckpt.CheckpointError, match="no manifest"):
        ckpt.load(partial)
    # a truncated file is caught by its size
    g = tmp_path / "step-00000003" / "state.json"
    g.write_text(g.read_text()[:-2])
    assert m.latest().name == "step-00000002"


def test_optimizer_state_round_trips_through_safetensors_and_json(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.randn(4, 3)).square().mean().backward()
    opt.step()
    tensors, groups = ckpt.optimizer_to_parts(opt.state_dict())
    m = ckpt.CheckpointManager(tmp_path)
    m.save(1, {"optimizer": tensors}, {"groups": groups})
    loaded, state = ckpt.load(m.latest())
    opt2 = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters(), lr=1.0)
    opt2.load_state_dict(ckpt.optimizer_from_parts(loaded["optimizer"], json.loads(json.dumps(state["groups"]))))
    for a, b in zip(opt.state_dict()["state"].values(), opt2.state_dict()["state"].values()):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert opt2.param_groups[0]["lr"] == 1e-2


def test_rng_states_round_trip_through_json():
    g = torch.Generator().manual_seed(3)
    state = json.loads(json.dumps(ckpt.rng_state({"g": g})))
    expected = (random.random(), np.random.rand(), torch.rand(2), torch.rand(2, generator=g))
    ckpt.set_rng_state(state, {"g": g})
    got = (random.random(), np.random.rand(), torch.rand(2), torch.rand(2, generator=g))
    assert expected[:2] == got[:2] and torch.equal(expected[2], got[2]) and torch.equal(expected[3], got[3])


def test_lr_schedule_warmup_then_cosine_or_constant():
    kw = dict(warmup_steps=4, max_steps=14, min_ratio=0.1)
    assert [lr_factor(s, schedule="constant", **kw) for s in (0, 3, 4, 13)] == [0.25, 1.0, 1.0, 1.0]
    cos = [lr_factor(s, schedule="cosine", **kw) for s in range(4, 15)]
    assert cos[0] == 1.0 and abs(cos[5] - 0.55) < 1e-12 and abs(cos[-1] - 0.1) < 1e-12
    assert all(a >= b for a, b in zip(cos, cos[1:]))


def test_lr_schedule_wsd_is_constant_then_linear_to_min():
    kw = dict(warmup_steps=2, max_steps=10, min_ratio=0.1, decay_steps=4)
    wsd = [lr_factor(s, schedule="wsd", **kw) for s in range(11)]
    assert wsd[:6] == [0.5, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert wsd[6:] == pytest.approx([0.775, 0.55, 0.325, 0.1, 0.1])
    with pytest.raises(ValueError, match="decay_steps"):
        lr_factor(8, schedule="wsd", warmup_steps=0, max_steps=10)
