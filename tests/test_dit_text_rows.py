"""Zero-padded text rows computed once (vidgen/dit/text_rows.py) give the DiT's full computation over all L rows."""

import pytest
import torch

from tests.tiny_pipeline import perturb
from vidgen.dit.config import DiTConfig
from vidgen.dit.model import DiT, TokenLayout, timestep_groups
from vidgen.dit.step_cache import StepCache, StepCacheConfig
from vidgen.dit.text_rows import compact_text, compact_texts, real_rows

TINY = DiTConfig.preset("tiny")
L = 16  # text rows, as the pipeline pads them (tiny's text_len)


@pytest.fixture(scope="module")
def dit():
    torch.manual_seed(0)
    return perturb(DiT(TINY)).eval()


def padded(lengths: list[int], length: int = L, seed: int = 1) -> torch.Tensor:
    """Prompts of `lengths` real rows, zero-padded to `length` -> `(B, length, text_dim)`."""
    g = torch.Generator().manual_seed(seed)
    ctx = torch.randn(len(lengths), length, TINY.text_dim, generator=g)
    for b, n in enumerate(lengths):
        ctx[b, n:] = 0
    return ctx


def full_forward(dit: DiT, x, t, context, step_cache=None) -> torch.Tensor:
    """`DiT.forward` with every text row embedded and attended: the computation the shortcut must equal."""
    t = timestep_groups(dit.check_inputs(x, t, context))  # (B, G)
    grid = dit.token_grid(x)
    tokens = dit.embed_patches(x)  # (B, S, D)
    e, time_mod = dit.embed_time(t)
    layout = TokenLayout((tokens.shape[1] // t.shape[1],) * t.shape[1])
    out = dit.run_blocks(tokens, time_mod, dit.text_embedding(context), dit.rope(grid, x.device), layout, step_cache)
    return dit.unpatchify(dit.head(out, e, layout), grid)


def rel(a, b) -> float:
    return ((a - b).norm() / b.norm()).item()


def test_compaction_keeps_the_longest_prompt_and_one_zero_row():
    ctx = padded([3, 7])
    kept, repeats = compact_text(ctx)
    assert real_rows(ctx) == 7
    assert kept.shape == (2, 8, TINY.text_dim) and torch.equal(kept, ctx[:, :8])
    assert repeats.tolist() == [1] * 7 + [L - 7]  # the kept zero row stands for rows 7..15
    assert compact_text(padded([L, 2]))[1] is None  # one sample fills all rows: nothing to drop
    assert compact_text(padded([L - 1]))[1] is None  # a single zero row: keeping it is all there is
    kept, repeats = compact_text(torch.zeros(2, L, 5))  # no text at all: one zero key counted L times
    assert kept.shape == (2, 1, 5) and repeats.tolist() == [L]
    kept, repeats = compact_texts([padded([2])[0], padded([5], length=5)[0], padded([0], length=3)[0]])
    assert [k.shape[0] for k in kept] == [3, 5, 1] and repeats.tolist() == [1, 1, L - 2, 1, 1, 1, 1, 1, 3]


@pytest.mark.parametrize("lengths", [[L, L], [5, 5], [3, 11], [0, 0], [0, 6], [L, 4], [L - 1, 2]])
@pytest.mark.parametrize("per_frame", [False, True])
def test_forward_equals_full_computation(dit, lengths, per_frame):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, TINY.in_dim, 3, 4, 4, generator=g)
    t = torch.tensor([[100.0, 500.0, 900.0], [3.0, 40.0, 999.0]]) if per_frame else torch.tensor([700.0, 20.0])
    ctx = padded(lengths)
    with torch.no_grad():
        out, ref = dit(x, t, ctx), full_forward(dit, x, t, ctx)
    assert rel(out, ref) < 1e-5
    if compact_text(ctx)[1] is None:
        assert torch.equal(out, ref)  # nothing dropped: the very same computation


def test_each_sample_equals_itself_alone(dit):
    """A short prompt batched with a long one (its zero rows below n counted one by one) gives its own output."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, TINY.in_dim, 2, 4, 4, generator=g)
    ctx = padded([2, 9])
    with torch.no_grad():
        both = dit(x, torch.tensor([600.0, 600.0]), ctx)
        for b in range(2):
            assert rel(both[b:b + 1], dit(x[b:b + 1], torch.tensor([600.0]), ctx[b:b + 1])) < 1e-5


def test_gradients_equal_full_computation(dit):
    g = torch.Generator().manual_seed(4)
    x, ctx, w = torch.randn(1, TINY.in_dim, 2, 4, 4, generator=g), padded([4]), torch.randn(1, TINY.out_dim, 2, 4, 4)
    grads = []
    for fn in (dit, lambda *a: full_forward(dit, *a)):
        dit.zero_grad()
        (fn(x, torch.tensor([300.0]), ctx) * w).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in dit.parameters()]))
    dit.zero_grad()
    assert rel(grads[0], grads[1]) < 1e-5


def test_packed_equals_full_computation(dit):
    g = torch.Generator().manual_seed(5)
    xs = [torch.randn(TINY.in_dim, 3, 4, 6, generator=g), torch.randn(TINY.in_dim, 1, 8, 2, generator=g),
          torch.randn(TINY.in_dim, 2, 2, 2, generator=g)]
    ts = [torch.tensor([0.0, 400.0, 800.0]), torch.tensor(250.0), torch.tensor(900.0)]
    ctxs = [padded([3])[0], padded([5], length=5)[0], padded([0], length=7)[0]]  # padded, full, empty
    with torch.no_grad():
        packed = dit.forward_packed(xs, ts, ctxs)
        for x, t, ctx, out in zip(xs, ts, ctxs, packed):
            t = t.reshape(1, -1) if t.ndim else t.reshape(1)
            assert rel(out, full_forward(dit, x[None], t, ctx[None])[0]) < 1e-5


def test_step_cache_sees_the_same_blocks(dit):
    g = torch.Generator().manual_seed(6)
    x, t, ctx = torch.randn(2, TINY.in_dim, 2, 4, 4, generator=g), torch.tensor([500.0, 500.0]), padded([3, 6])
    with torch.no_grad():
        ours, full = StepCache(StepCacheConfig(threshold=1e9)), StepCache(StepCacheConfig(threshold=1e9))
        first = dit(x, t, ctx, step_cache=ours)
        assert rel(first, full_forward(dit, x, t, ctx, step_cache=full)) < 1e-5
        assert rel(ours.rest_residual, full.rest_residual) < 1e-5
        second = dit(x, t, ctx, step_cache=ours)  # reuses blocks 2..N: the first output again
    assert ours.skipped == 1 and rel(second, first) < 1e-5
