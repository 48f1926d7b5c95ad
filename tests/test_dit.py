"""The DiT on the tiny preset: shapes, per-frame timesteps, packed batches, bad input, checkpointing, compile, bf16."""

import dataclasses
from pathlib import Path

import pytest
import torch

from vidgen.config_io import from_dict
from vidgen.dit.config import PRESETS, DiTConfig
from vidgen.dit.model import DiT

TINY = DiTConfig.preset("tiny")
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "dit"


@pytest.fixture(scope="module")
def dit():
    torch.manual_seed(0)
    model = DiT(TINY).eval()
    with torch.no_grad():  # the zero-ish default init would hide bugs in the head and gates
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def _inputs(b=2, f=3, h=4, w=6, seq=5):
    return torch.randn(b, TINY.in_dim, f, h, w), torch.randn(b, seq, TINY.text_dim)


def test_output_shape(dit):
    x, ctx = _inputs()
    with torch.no_grad():
        assert dit(x, torch.tensor([0.0, 999.0]), ctx).shape == (2, TINY.out_dim, 3, 4, 6)


def test_equal_per_frame_timesteps_equal_scalar_exactly(dit):
    x, ctx = _inputs()
    t = torch.tensor([731.5, 12.0])
    with torch.no_grad():
        assert torch.equal(dit(x, t[:, None].expand(2, 3), ctx), dit(x, t, ctx))


def test_each_frame_is_modulated_by_its_own_timestep(dit):
    # Without blocks (no attention mixing frames) frame f of the output is the head modulated by t[f] alone, so it
    # must equal frame f of a scalar run at t[f]. Parity of the full per-frame path is in test_dit_checkpoint.py.
    model = DiT(dataclasses.replace(TINY, num_layers=0)).eval()
    x, ctx = _inputs(b=1)
    ts = torch.tensor([[100.0, 500.0, 900.0]])
    with torch.no_grad():
        mixed = model(x, ts, ctx)
        for f in range(3):
            alone = model(x, ts[:, f], ctx)
            torch.testing.assert_close(mixed[:, :, f], alone[:, :, f], rtol=1e-6, atol=1e-6)


def test_packed_equals_separate(dit):
    xs = [torch.randn(TINY.in_dim, 3, 4, 6), torch.randn(TINY.in_dim, 1, 8, 2), torch.randn(TINY.in_dim, 2, 2, 2)]
    ts = [torch.tensor([0.0, 400.0, 800.0]), torch.tensor(250.0), torch.tensor([3.0, 3.0])]
    ctxs = [torch.randn(5, TINY.text_dim), torch.randn(9, TINY.text_dim), torch.randn(1, TINY.text_dim)]
    with torch.no_grad():
        packed = dit.forward_packed(xs, ts, ctxs)
        for x, t, ctx, out in zip(xs, ts, ctxs, packed):
            alone = dit(x[None], t.reshape(1, -1) if t.ndim else t.reshape(1), ctx[None])[0]
            torch.testing.assert_close(out, alone, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "x_shape, t, ctx_shape, match",
    [
        ((2, 5, 3, 4, 6), [1.0, 2.0], (2, 5, 24), "expected \\(B, 4, F, h, w\\)"),
        ((2, 4, 3, 5, 6), [1.0, 2.0], (2, 5, 24), "not divisible by the patch size"),
        ((2, 4, 3, 4, 6), [1.0, 2.0, 3.0], (2, 5, 24), "t has shape \\(3,\\)"),
        ((2, 4, 3, 4, 6), [[1.0, 2.0]] * 2, (2, 5, 24), "expected \\(2,\\) or \\(2, 3\\)"),
        ((2, 4, 3, 4, 6), [1.0, 2.0], (2, 5, 16), "context has shape"),
        ((2, 4, 3, 4, 6), [1.0, 2.0], (1, 5, 24), "context has shape"),
    ],
)
def test_bad_input_errors(dit, x_shape, t, ctx_shape, match):
    with pytest.raises(ValueError, match=match):
        dit(torch.randn(x_shape), torch.tensor(t), torch.randn(ctx_shape))


def test_gradient_checkpointing_gives_same_gradients():
    torch.manual_seed(0)
    model = DiT(TINY)
    x, ctx = _inputs(b=1)
    t = torch.tensor([[0.0, 300.0, 600.0]])
    grads = []
    for flag in (False, True):
        model.zero_grad()
        model.gradient_checkpointing = flag
        model(x, t, ctx).square().mean().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def test_compiled_blocks_match_eager(dit):
    # aot_eager traces every block through dynamo and AOT autograd with fullgraph=True (no graph breaks) without the
    # half-minute C++ build that inductor needs on this CPU; the traced graph is what inductor would compile.
    compile_ok = getattr(torch, "compile", None)
    if compile_ok is None:
        pytest.skip("torch.compile is not available in this torch build")
    x, ctx = _inputs(b=1)
    t = torch.tensor([[5.0, 500.0, 995.0]])
    model = DiT(TINY).eval()
    model.load_state_dict(dit.state_dict())
    with torch.no_grad():
        eager = model(x, t, ctx)
        for i, block in enumerate(model.blocks):
            model.blocks[i] = torch.compile(block, backend="aot_eager", fullgraph=True)
        torch.testing.assert_close(model(x, t, ctx), eager, rtol=1e-5, atol=1e-6)


def test_bf16_smoke(dit):
    model = DiT(TINY).eval()
    model.load_state_dict(dit.state_dict())
    x, ctx = _inputs(b=1)
    t = torch.tensor([[0.0, 500.0, 999.0]])
    with torch.no_grad():
        ref = model(x, t, ctx)
        out = model.to(torch.bfloat16)(x.bfloat16(), t, ctx.bfloat16())
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    assert (out.float() - ref).norm() / ref.norm() < 0.05


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_yaml_configs_match_presets(name):
    assert from_dict(DiTConfig, CONFIG_DIR / f"{name}.yaml") == PRESETS[name]
    assert DiTConfig.load({"preset": name}) == PRESETS[name]


def test_published_sizes():
    # Parameter counts of the released Wan 2.1 T2V models, from their configs (meta device: no memory).
    with torch.device("meta"):
        small = sum(p.numel() for p in DiT(DiTConfig.preset("wan2.1-t2v-1.3b")).parameters())
        large = sum(p.numel() for p in DiT(DiTConfig.preset("wan2.1-t2v-14b")).parameters())
    assert 1.2e9 < small < 1.5e9 and 13e9 < large < 15e9


def test_config_rejects_bad_heads():
    with pytest.raises(ValueError, match="not divisible"):
        DiTConfig(dim=50, ffn_dim=8, num_heads=4, num_layers=1)


def test_without_qk_norm_and_cross_norm(tmp_path):
    config = dataclasses.replace(TINY, qk_norm=False, cross_attn_norm=False)
    model = DiT(config).eval()
    names = set(model.state_dict())
    assert not any("norm_q" in n or "cross_norm" in n for n in names)
    from vidgen.dit.checkpoint import save_dit

    save_dit(model, tmp_path, fmt="wan")  # the original Wan layout can express both switches
    x, ctx = _inputs(b=1)
    t = torch.tensor([9.0])
    with torch.no_grad():
        assert torch.equal(DiT.from_pretrained(tmp_path)(x, t, ctx), model(x, t, ctx))
