"""vidgen_kernels: every fast path is bounded by a multiple of the reference's own error against an fp64 truth."""

import pytest
import torch

from vidgen_kernels.attention import (
    attention,
    attention_reference,
    available_backends,
    block_diagonal_mask,
    cu_seqlens,
)
from vidgen_kernels.ops import (
    apply_rope,
    apply_rope_reference,
    modulate,
    modulate_reference,
    rms_norm,
    rms_norm_reference,
    rope_angles,
    rope_rotation,
)

LENGTHS = [7, 16, 1, 11]  # packed sequences, including a single token


def _qkv(shape, dtype):
    return [torch.randn(shape, dtype=torch.float64).to(dtype) for _ in range(3)]


def _err(a, b):
    return (a.double() - b.double()).abs().max().item()


def _bound(fast, ref, truth, dtype):
    # flash-attention's criterion: the fast path may be at most a small multiple worse than the textbook computation
    # at the same precision, plus a floor at that precision's resolution.
    floor = {torch.float32: 1e-6, torch.bfloat16: 1e-2}[dtype]
    assert _err(fast, truth) <= 2 * _err(ref, truth) + floor


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("backend", ["sdpa", "auto"])
def test_batched_attention_error_bounded_by_reference(dtype, backend):
    q, k, v = _qkv((2, 19, 3, 16), dtype)
    truth = attention_reference(q.double(), k.double(), v.double())
    _bound(attention(q, k, v, backend=backend), attention_reference(q, k, v), truth, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("backend", ["sdpa", "sdpa_mask"])
def test_packed_attention_error_bounded_by_reference(dtype, backend):
    q, k, v = _qkv((sum(LENGTHS), 3, 16), dtype)
    cu = cu_seqlens(LENGTHS)
    truth = attention_reference(q.double(), k.double(), v.double(), cu, cu)
    fast = attention(q, k, v, cu, cu, backend=backend)
    _bound(fast, attention_reference(q, k, v, cu, cu), truth, dtype)


def test_packed_equals_each_sequence_alone():
    q_lens, k_lens = [5, 9, 3], [4, 12, 7]  # cross-attention shaped: different key lengths
    q = torch.randn(sum(q_lens), 2, 8)
    k, v = torch.randn(2, sum(k_lens), 2, 8)
    out = attention(q, k, v, cu_seqlens(q_lens), cu_seqlens(k_lens))
    for qs, ks, vs, o in zip(q.split(q_lens), k.split(k_lens), v.split(k_lens), out.split(q_lens)):
        torch.testing.assert_close(o, attention(qs[None], ks[None], vs[None])[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("backend", ["sdpa", "reference"])
def test_key_repeats_equal_repeated_keys(dtype, backend):
    """A key counted m times is m identical keys (and values): against the truth over the expanded keys."""
    q, k, v = _qkv((2, 9, 3, 16), dtype)
    repeats = torch.tensor([1, 3, 1, 1, 7, 1, 1, 1, 2])
    k_full, v_full = (z.double().repeat_interleave(repeats, dim=1) for z in (k, v))
    truth = attention_reference(q.double(), k_full, v_full)
    _bound(attention(q, k, v, key_repeats=repeats, backend=backend), attention_reference(q, k_full.to(dtype),
           v_full.to(dtype)), truth, dtype)


@pytest.mark.parametrize("backend", ["sdpa", "sdpa_mask", "reference"])
def test_packed_key_repeats_equal_repeated_keys(backend):
    q_lens, k_lens = [5, 9, 3], [4, 2, 3]
    q = torch.randn(sum(q_lens), 2, 8)
    k, v = torch.randn(2, sum(k_lens), 2, 8)
    repeats = torch.tensor([1, 1, 1, 5, 2, 1, 1, 1, 9])
    k_full, v_full = (z.repeat_interleave(repeats, dim=0) for z in (k, v))
    full_lens = [sum(r.tolist()) for r in repeats.split(k_lens)]
    want = attention(q, k_full, v_full, cu_seqlens(q_lens), cu_seqlens(full_lens))
    got = attention(q, k, v, cu_seqlens(q_lens), cu_seqlens(k_lens), key_repeats=repeats, backend=backend)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_key_repeats_expansion_for_flash():
    """FlashAttention takes no mask: the keys are expanded and the packed key starts recounted."""
    from vidgen_kernels.attention import _expand_repeats

    k = torch.arange(5.0)[:, None, None].expand(5, 1, 2)  # (T_k, H, D): key i holds i
    ks, vs, cu = _expand_repeats(k, k, cu_seqlens([2, 3]), torch.tensor([1, 3, 1, 1, 2]))
    assert ks[:, 0, 0].tolist() == [0, 1, 1, 1, 2, 3, 4, 4] and torch.equal(ks, vs)
    assert cu.tolist() == [0, 4, 8] and cu.dtype == torch.int32


def test_key_repeats_shape_is_checked():
    q, k, v = _qkv((1, 4, 2, 8), torch.float32)
    with pytest.raises(ValueError, match="key_repeats has shape"):
        attention(q, k, v, key_repeats=torch.ones(5))


def test_block_diagonal_mask():
    mask = block_diagonal_mask(cu_seqlens([2, 1]), cu_seqlens([1, 2]))
    assert mask.tolist() == [[True, False, False], [True, False, False], [False, True, True]]


def test_flash_backends_are_optional():
    names = available_backends()
    assert "sdpa" in names and "reference" in names
    if "flash2" not in names:
        with pytest.raises(RuntimeError, match="not installed"):
            attention(*_qkv((1, 4, 2, 8), torch.float32), backend="flash2")


def test_attention_bad_input():
    q, k, v = _qkv((1, 4, 2, 8), torch.float32)
    with pytest.raises(ValueError, match="expected"):
        attention(q[0], k, v)
    with pytest.raises(ValueError, match="cu_seqlens"):
        attention(q[0], k[0], v[0], cu_seqlens([4]), None)
    with pytest.raises(ValueError, match="end at"):
        attention(q[0], k[0], v[0], cu_seqlens([3]), cu_seqlens([3]))
    with pytest.raises(ValueError, match="unknown attention backend"):
        attention(q, k, v, backend="xformers")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rms_norm_matches_reference(dtype):
    x, w = torch.randn(3, 5, 24).to(dtype), torch.randn(24).to(dtype)
    truth = rms_norm_reference(x.double(), w.double(), 1e-6)
    _bound(rms_norm(x, w, 1e-6), rms_norm_reference(x, w, 1e-6), truth, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_modulate_matches_reference(dtype):
    x, shift, scale = torch.randn(2, 4, 8).to(dtype), torch.randn(2, 1, 8).to(dtype), torch.randn(2, 1, 8).to(dtype)
    truth = modulate_reference(x.double(), shift.double(), scale.double())
    _bound(modulate(x, shift, scale), modulate_reference(x, shift, scale), truth, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rope_matches_complex_reference(dtype):
    rotation = rope_rotation(rope_angles(24, (2, 3, 4)))
    x = torch.randn(2, 24, 3, 24).to(dtype)  # (B, S, H, D)
    truth = apply_rope_reference(x.double(), rotation)
    ref = apply_rope_reference(x, rotation)  # fp64 internally, rounded once to dtype
    _bound(apply_rope(x, rotation), ref, truth, dtype)
    packed = apply_rope(x[0], rotation)  # (S, H, D) layout
    torch.testing.assert_close(packed, apply_rope(x, rotation)[0])


def test_rope_angles_split_time_height_width():
    head_dim = 24  # height and width get 2*(24//6) = 8 channels (4 angles) each, time the remaining 8
    angles = rope_angles(head_dim, (3, 2, 5)).reshape(3, 2, 5, head_dim // 2)
    t_part, h_part, w_part = angles[..., :4], angles[..., 4:8], angles[..., 8:]
    assert torch.equal(t_part[:, :1, :1].expand_as(t_part), t_part)  # time angles depend on f only
    assert torch.equal(h_part[:1, :, :1].expand_as(h_part), h_part)
    assert torch.equal(w_part[:1, :1, :].expand_as(w_part), w_part)
    assert torch.allclose(w_part[0, 0, 1], 10000.0 ** (-torch.arange(0, 8, 2, dtype=torch.float64) / 8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (FlashAttention/SDPA GPU paths)")
@pytest.mark.parametrize("packed", [False, True])
def test_cuda_auto_backend_error_bounded_by_reference(packed):
    dtype = torch.bfloat16
    shape = (sum(LENGTHS), 4, 64) if packed else (2, 37, 4, 64)
    q, k, v = (x.cuda() for x in _qkv(shape, dtype))
    cu = cu_seqlens(LENGTHS, device="cuda") if packed else None
    truth = attention_reference(q.double(), k.double(), v.double(), cu, cu)
    _bound(attention(q, k, v, cu, cu), attention_reference(q, k, v, cu, cu), truth, dtype)
