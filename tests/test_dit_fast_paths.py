"""The DiT's paths for other hardware, checked on CPU: autocast boundaries as Wan draws them, the half-precision
linear, and torch.compile without graph breaks."""

import pytest
import torch
import torch.nn.functional as F

from tests.tiny_pipeline import perturb
from vidgen.dit.config import DiTConfig
from vidgen.dit.model import DiT, TokenLayout
from vidgen.dit.text_rows import compact_text
from vidgen_kernels import ops


@pytest.fixture(scope="module")
def dit():
    torch.manual_seed(0)
    return perturb(DiT(DiTConfig.preset("tiny"))).eval()


def _inputs(b=1):
    g = torch.Generator().manual_seed(1)
    return torch.randn(b, 4, 2, 4, 4, generator=g), torch.full((b,), 700.0), torch.randn(b, 5, 24, generator=g)


def test_fp32_islands_hold_under_bf16_autocast(dit):
    """Time embedding, modulation, norms, residual stream and head stay fp32; only matmuls and attention go bf16."""
    x, t, ctx = _inputs()
    seen = {}

    def record(name):
        def hook(module, args, out):
            seen[name] = (args[0].dtype, out.dtype)
        return hook

    handles = [dit.blocks[0].register_forward_hook(record("block")), dit.head.register_forward_hook(record("head")),
               dit.blocks[0].self_attn.qkv.register_forward_hook(record("qkv"))]
    e_ref, mod_ref = dit.embed_time(t[:, None])
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            e, mod = dit.embed_time(t[:, None])
            out = dit(x, t, ctx)
    finally:
        for h in handles:
            h.remove()
    assert e.dtype == mod.dtype == torch.float32
    assert torch.equal(e, e_ref) and torch.equal(mod, mod_ref)  # computed in fp32, not merely cast to it
    assert seen["block"] == (torch.float32, torch.float32)  # the residual stream
    assert seen["head"] == (torch.float32, torch.float32)
    assert seen["qkv"] == (torch.float32, torch.bfloat16)  # matmuls do run in bf16
    with torch.no_grad():
        ref = dit(x, t, ctx)
    assert out.dtype == torch.float32
    assert (out - ref).norm() / ref.norm() < 3e-2  # bf16 matmuls, fp32 everything else


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_linear_error_bounded_by_half_reference(dtype):
    """ops.linear (fp32 compute on CPUs without half units) is as close to fp64 as F.linear in that dtype."""
    g = torch.Generator().manual_seed(0)
    x, w, b = (torch.randn(*s, generator=g).to(dtype) for s in ((3, 40, 64), (96, 64), (96,)))
    truth = F.linear(x.double(), w.double(), b.double())
    err = (ops.linear(x, w, b).double() - truth).abs().max()
    ref_err = (F.linear(x, w, b).double() - truth).abs().max()
    assert ops.linear(x, w, b).dtype == dtype
    assert err <= 2 * ref_err + 1e-6
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert ops.linear(x.float(), w.float(), b.float()).dtype == torch.bfloat16


@pytest.mark.parametrize("padded_text", [False, True])
def test_block_compiles_without_graph_breaks(dit, padded_text):
    """fullgraph=True fails on any graph break; aot_eager keeps it fast (no code generation). Padded text: the
    trailing zero rows as one counted key (`context_repeats`, an additive mask in attention)."""
    torch._dynamo.reset()
    x, t, ctx = _inputs()
    repeats = None
    if padded_text:
        ctx, repeats = compact_text(torch.cat([ctx[:, :2], ctx.new_zeros(1, 6, ctx.shape[2])], dim=1))  # (1, 3, 24)
    tokens = dit.embed_patches(x)  # (1, 32, 48)
    _, time_mod = dit.embed_time(t[:, None])
    context = dit.text_embedding(ctx)
    rope = dit.rope((2, 2, 2), x.device)
    layout = TokenLayout((tokens.shape[1],), context_repeats=repeats)
    block = dit.blocks[0]
    compiled = torch.compile(block, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(tokens, time_mod, context, rope, layout),
                                   block(tokens, time_mod, context, rope, layout), rtol=1e-5, atol=1e-6)
    torch._dynamo.reset()
