"""One attention entry point for the DiT, with a pure-PyTorch reference of the same signature.

Layouts follow FlashAttention: batched `(B, S, H, D)`, or packed `(T, H, D)` where `cu_seqlens` (int32, `(N+1,)`,
starting at 0) cut the `T` tokens into `N` independent sequences. Packed sequences attend only within themselves, so
samples of different lengths run together without padding.

Backends, chosen per call: FlashAttention 3, then FlashAttention 2 (CUDA, fp16/bf16, when installed), else PyTorch SDPA.
On SDPA, packed input is run one segment at a time: on CPU (2 threads) that measured faster than one call with a
block-diagonal mask (backend "sdpa_mask"), which computes every off-diagonal block only to discard it: 48 vs 60 ms for
segments of 80/80/48/160 tokens x 6 heads x 32, and 129 vs 324 ms for 512/256/768 tokens x 12 heads x 64.

`key_repeats` lets one key stand for several identical ones (the DiT's zero-padded text rows, vidgen/dit/text_rows.py):
softmax over m equal keys is softmax over one of them with logit + log m, and its value counted once. SDPA takes that as
an additive mask (on CPU it costs nothing measurable: 448 vs 441 µs for 320 queries x 8 heads x 64 against 25 keys);
FlashAttention takes no mask, so there the keys and values are expanded back to their full count (exact, no faster).
"""

from __future__ import annotations

import functools
import itertools

import torch
import torch.nn.functional as F

from vidgen_kernels.ops import upcast_on_cpu

BACKENDS = ("auto", "flash3", "flash2", "sdpa", "sdpa_mask", "reference")


@functools.cache
def _flash3():
    try:  # FlashAttention 3 (Hopper) ships as `flash_attn_interface`
        import flash_attn_interface as fa3
    except ImportError:
        return None
    return fa3


@functools.cache
def _flash2():
    try:
        import flash_attn as fa2
    except ImportError:
        return None
    return fa2


def available_backends() -> list[str]:
    """Backends usable in this process (the flash ones still need CUDA fp16/bf16 tensors at call time)."""
    names = []
    if _flash3() is not None:
        names.append("flash3")
    if _flash2() is not None:
        names.append("flash2")
    return names + ["sdpa", "sdpa_mask", "reference"]


def _check(q, k, v, cu_seqlens_q, cu_seqlens_k, key_repeats=None):
    packed = cu_seqlens_q is not None
    if (cu_seqlens_k is not None) != packed:
        raise ValueError("give both cu_seqlens_q and cu_seqlens_k for packed attention, or neither")
    want = 3 if packed else 4
    for name, x in (("q", q), ("k", k), ("v", v)):
        if x.ndim != want:
            layout = "(T, H, D) with cu_seqlens" if packed else "(B, S, H, D)"
            raise ValueError(f"attention: {name} has shape {tuple(x.shape)}, expected {layout}")
    if k.shape != v.shape or q.shape[-2:] != k.shape[-2:] or (not packed and q.shape[0] != k.shape[0]):
        raise ValueError(f"attention: incompatible shapes q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    if packed:
        if len(cu_seqlens_q) != len(cu_seqlens_k):
            raise ValueError(f"cu_seqlens_q has {len(cu_seqlens_q)} entries but cu_seqlens_k {len(cu_seqlens_k)}")
        if int(cu_seqlens_q[-1]) != q.shape[0] or int(cu_seqlens_k[-1]) != k.shape[0]:
            raise ValueError(
                f"cu_seqlens end at {int(cu_seqlens_q[-1])}/{int(cu_seqlens_k[-1])} but q/k hold "
                f"{q.shape[0]}/{k.shape[0]} tokens"
            )
    if key_repeats is not None and key_repeats.shape != (k.shape[-3],):
        raise ValueError(f"attention: key_repeats has shape {tuple(key_repeats.shape)}, expected one count per key "
                         f"({k.shape[-3]},)")


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens_q: torch.Tensor | None = None,
    cu_seqlens_k: torch.Tensor | None = None,
    max_seqlen_q: int | None = None,
    max_seqlen_k: int | None = None,
    scale: float | None = None,
    backend: str = "auto",
    key_repeats: torch.Tensor | None = None,
) -> torch.Tensor:
    """Softmax attention without masking (beyond the packing). Output has q's shape and dtype.

    key_repeats: positive integer counts, one per key (`(Sk,)` batched, `(T_k,)` packed): the result is that of
    attention over the keys (and values) with key j repeated key_repeats[j] times."""
    _check(q, k, v, cu_seqlens_q, cu_seqlens_k, key_repeats)
    if backend not in BACKENDS:
        raise ValueError(f"unknown attention backend {backend!r}; choose one of {BACKENDS}")
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    packed = cu_seqlens_q is not None
    if backend == "auto":
        backend = _auto_backend(q)
    if backend == "reference":
        return attention_reference(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, scale,
                                   key_repeats)
    if backend in ("flash3", "flash2"):
        lib = _flash3() if backend == "flash3" else _flash2()
        if lib is None:
            raise RuntimeError(f"attention backend {backend!r} requested but its package is not installed")
        if key_repeats is not None:  # no additive mask in FlashAttention: the full keys again
            k, v, cu_seqlens_k = _expand_repeats(k, v, cu_seqlens_k, key_repeats)
            max_seqlen_k = None
        if not packed:
            out = lib.flash_attn_func(q, k, v, softmax_scale=scale)
            return out[0] if isinstance(out, tuple) else out  # FA3 may also return the log-sum-exp
        cu_q, cu_k = cu_seqlens_q.to(q.device, torch.int32), cu_seqlens_k.to(q.device, torch.int32)
        max_q = max_seqlen_q or int((cu_q[1:] - cu_q[:-1]).max())
        max_k = max_seqlen_k or int((cu_k[1:] - cu_k[:-1]).max())
        out = lib.flash_attn_varlen_func(q, k, v, cu_q, cu_k, max_q, max_k, softmax_scale=scale)
        return out[0] if isinstance(out, tuple) else out
    if not packed:
        return _sdpa(q, k, v, scale, key_repeats)
    if backend == "sdpa_mask":
        return _sdpa_block_diagonal(q, k, v, cu_seqlens_q, cu_seqlens_k, scale, key_repeats)
    return _sdpa_segments(q, k, v, cu_seqlens_q, cu_seqlens_k, scale, key_repeats)


def _expand_repeats(k, v, cu_seqlens_k, key_repeats):
    """k/v `(B, Sk, H, D)` or packed `(T_k, H, D)` -> every key repeated key_repeats times; packed starts recounted."""
    dim = k.ndim - 3  # the key axis
    repeats = key_repeats.to(k.device, torch.long)
    k, v = (z.repeat_interleave(repeats, dim=dim) for z in (k, v))
    if cu_seqlens_k is not None:  # start of segment i = repeats before its first key
        ends = torch.cat([repeats.new_zeros(1), repeats.cumsum(0)])
        cu_seqlens_k = ends[cu_seqlens_k.to(k.device, torch.long)].to(torch.int32)
    return k, v, cu_seqlens_k


def _log_repeats(key_repeats: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Counts `(Sk,)` -> additive logits log(count) `(Sk,)` in like's dtype and device (0 where a key is single)."""
    return key_repeats.to(like.device, like.dtype).log()


def _auto_backend(q: torch.Tensor) -> str:
    if q.is_cuda and q.dtype in (torch.float16, torch.bfloat16):
        if _flash3() is not None and torch.cuda.get_device_capability(q.device)[0] == 9:
            return "flash3"
        if _flash2() is not None:
            return "flash2"
    return "sdpa"


def _sdpa(q, k, v, scale, key_repeats=None):
    # (B, S, H, D) -> (B, H, S, D) views for SDPA and back
    half = upcast_on_cpu(q)
    if half is not None:  # no half matmul units on this CPU: fp32 is faster (80 tokens x 6 heads: 140 vs 197 us)
        q, k, v = q.float(), k.float(), v.float()
    # (Sk,) log-counts -> (1, 1, 1, Sk), broadcast over (B, H, Sq, Sk); in half precision log m is rounded like the
    # logits themselves
    mask = None if key_repeats is None else _log_repeats(key_repeats, q)[None, None, None]
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask,
                                         scale=scale)
    return out.transpose(1, 2) if half is None else out.transpose(1, 2).to(half)


def _segments(cu_seqlens: torch.Tensor) -> list[tuple[int, int]]:
    bounds = cu_seqlens.tolist()
    return list(zip(bounds[:-1], bounds[1:]))


def _sdpa_segments(q, k, v, cu_seqlens_q, cu_seqlens_k, scale, key_repeats=None):
    out = torch.empty_like(q)
    for (q0, q1), (k0, k1) in zip(_segments(cu_seqlens_q), _segments(cu_seqlens_k)):
        # (S_i, H, D) -> (1, S_i, H, D)
        repeats = None if key_repeats is None else key_repeats[k0:k1]
        out[q0:q1] = _sdpa(q[None, q0:q1], k[None, k0:k1], v[None, k0:k1], scale, repeats)[0]
    return out


def block_diagonal_mask(cu_seqlens_q: torch.Tensor, cu_seqlens_k: torch.Tensor, device=None) -> torch.Tensor:
    """Boolean `(T_q, T_k)` mask, True where query and key belong to the same packed sequence."""
    seg_q = torch.repeat_interleave(torch.arange(len(cu_seqlens_q) - 1), torch.diff(cu_seqlens_q.cpu().long()))
    seg_k = torch.repeat_interleave(torch.arange(len(cu_seqlens_k) - 1), torch.diff(cu_seqlens_k.cpu().long()))
    return (seg_q[:, None] == seg_k[None, :]).to(device)


def _sdpa_block_diagonal(q, k, v, cu_seqlens_q, cu_seqlens_k, scale, key_repeats=None):
    mask = block_diagonal_mask(cu_seqlens_q, cu_seqlens_k, q.device)  # (T_q, T_k) bool
    if key_repeats is not None:  # (T_q, T_k) additive: log-counts inside the blocks, -inf outside
        mask = torch.where(mask, _log_repeats(key_repeats, q), float("-inf")).to(q.dtype)
    # (T, H, D) -> (1, H, T, D); the mask broadcasts over heads
    out = F.scaled_dot_product_attention(
        q.transpose(0, 1)[None], k.transpose(0, 1)[None], v.transpose(0, 1)[None], attn_mask=mask, scale=scale
    )
    return out[0].transpose(0, 1)


def attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens_q: torch.Tensor | None = None,
    cu_seqlens_k: torch.Tensor | None = None,
    max_seqlen_q: int | None = None,
    max_seqlen_k: int | None = None,
    scale: float | None = None,
    key_repeats: torch.Tensor | None = None,
) -> torch.Tensor:
    """Textbook softmax(q kᵀ·scale) v in the inputs' own dtype: the truth (in fp64) and the error yardstick.
    key_repeats: see `attention` (here the softmax weight of key j is multiplied by its count)."""
    _check(q, k, v, cu_seqlens_q, cu_seqlens_k, key_repeats)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if cu_seqlens_q is None:
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) * scale
        weights = scores.softmax(dim=-1)  # (B, H, Sq, Sk)
        if key_repeats is not None:
            weights = weights * key_repeats.to(q.dtype)
            weights = weights / weights.sum(dim=-1, keepdim=True)
        return torch.einsum("bhqk,bkhd->bqhd", weights, v)
    out = torch.empty_like(q)
    for (q0, q1), (k0, k1) in zip(_segments(cu_seqlens_q), _segments(cu_seqlens_k)):
        repeats = None if key_repeats is None else key_repeats[k0:k1]
        out[q0:q1] = attention_reference(q[None, q0:q1], k[None, k0:k1], v[None, k0:k1], scale=scale,
                                         key_repeats=repeats)[0]
    return out


def cu_seqlens(lengths: list[int], device=None) -> torch.Tensor:
    """Cumulative sequence starts `(N+1,)` int32 from a list of lengths."""
    if any(n < 0 for n in lengths):
        raise ValueError(f"sequence lengths must be non-negative, got {lengths}")
    return torch.tensor([0, *itertools.accumulate(lengths)], dtype=torch.int32, device=device)
