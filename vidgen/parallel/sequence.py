"""Sequence parallelism for the DiT: the tokens of one sample are sharded over the ranks of `parallel.sp_group`.

`DiT.forward(..., parallel=...)` uses these pieces: every rank embeds the full input (cheap), keeps its `Shard` of
n = ⌈S/P⌉ tokens (the last ranks carry zero padding when P does not divide S), runs all blocks on the shard with the
self-attention that `sequence_attention` picks, and gathers the head's output. Everything in a block is per token
except self-attention, which sees the whole sequence in one of two exact ways:

- Ulysses (heads divisible by P): an all-to-all turns "my tokens, all heads" into "all tokens, my H/P heads", attention
  runs over the full sequence for those heads, and a second all-to-all turns it back. Per block and rank it moves
  4 · n · D values (q, k, v out, the result back) whatever P is.
- Gathered K/V (any head count): each rank gathers everyone's keys and values and attends its own queries to all of
  them. It moves 2 · (P−1) · n · D values per block and holds the full K/V, so it is the fallback, not the default.

Ring attention (passing K/V blocks round a ring with an online softmax) would bound the K/V memory of the fallback at
2 · n · D, but it needs a log-sum-exp-returning attention kernel that our SDPA/flash backend does not expose uniformly;
the gathered-K/V fallback is simple and exact, and the K/V it holds (2·S·D) is small next to a block's activations.

Padding tokens never reach a real token: they are cut from the gathered sequence before attention (so they are never
keys) and dropped from the output. Cross-attention, modulation and the feed-forward need no communication.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from einops import rearrange

from vidgen.parallel.comm import all_to_all, gather_replicated, gather_shared
from vidgen_kernels.attention import attention


@dataclass(frozen=True)
class Shard:
    """This rank's slice [start, stop) of a sequence of `total` real tokens padded to `size · ranks`."""

    total: int
    ranks: int
    rank: int

    @property
    def size(self) -> int:
        return -(-self.total // self.ranks)  # ⌈S/P⌉

    @property
    def padded(self) -> int:
        return self.size * self.ranks

    @property
    def start(self) -> int:
        return self.rank * self.size

    @property
    def stop(self) -> int:
        return self.start + self.size

    def take(self, x: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """This rank's `size` entries of x along `dim` (length `total`), zero-padded past the end."""
        x = x.movedim(dim, 0)  # (total, ...)
        pad = x.new_zeros(self.padded - self.total, *x.shape[1:])  # new_zeros: any dtype, complex RoPE included
        return torch.cat([x, pad])[self.start : self.stop].movedim(0, dim)

    def gather(self, x: torch.Tensor, group) -> torch.Tensor:
        """Every rank's shard `(B, n, C)` -> the whole sequence `(B, total, C)` on each rank, padding dropped. The
        backward keeps this rank's slice: for outputs that every rank then uses identically."""
        return rearrange(gather_replicated(x, group), "p b n c -> b (p n) c")[:, : self.total]

    def local_groups(self, group_sizes: tuple[int, ...]) -> tuple[int, int, tuple[int, ...]]:
        """Which modulation groups this shard touches -> (first, last+1, their sizes within the shard); padding joins
        the last group touched (its values are discarded, any modulation will do)."""
        first = last = None
        sizes = []
        begin = 0
        for g, n in enumerate(group_sizes):
            lo, hi = max(begin, self.start), min(begin + n, self.stop)
            if lo < hi:
                first = g if first is None else first
                last = g
                sizes.append(hi - lo)
            begin += n
        if first is None:  # only padding here
            return len(group_sizes) - 1, len(group_sizes), (self.size,)
        sizes[-1] += self.size - sum(sizes)
        return first, last + 1, tuple(sizes)


def ulysses_attention(q, k, v, shard: Shard, group) -> torch.Tensor:
    """Local q, k, v `(B, n, H, Dh)` of this shard -> attention over the full sequence, `(B, n, H, Dh)`."""
    p = shard.ranks
    # (B, n, H, Dh) -> (P, B, n, H/P, Dh): head group j goes to rank j; back: slice r holds rank r's tokens
    q, k, v = (all_to_all(rearrange(z, "b n (p h) d -> p b n h d", p=p), group) for z in (q, k, v))
    q, k, v = (rearrange(z, "p b n h d -> b (p n) h d")[:, : shard.total] for z in (q, k, v))  # padding cut
    out = attention(q, k, v)  # (B, S, H/P, Dh)
    out = F.pad(out, (0, 0, 0, 0, 0, shard.padded - shard.total))  # (B, P·n, H/P, Dh)
    out = all_to_all(rearrange(out, "b (p n) h d -> p b n h d", p=p), group)  # slice r: rank r's heads, my tokens
    return rearrange(out, "p b n h d -> b n (p h) d")


def gathered_kv_attention(q, k, v, shard: Shard, group) -> torch.Tensor:
    """Local q, k, v `(B, n, H, Dh)` -> my queries against everyone's keys and values, `(B, n, H, Dh)`."""
    k, v = (rearrange(gather_shared(z, group), "p b n h d -> b (p n) h d")[:, : shard.total] for z in (k, v))
    return attention(q, k, v)


def sequence_attention(method: str, num_heads: int, ranks: int) -> Callable[..., torch.Tensor]:
    """The self-attention over a sharded sequence for `method`: "ulysses", "gather_kv", or "auto" (Ulysses when the
    heads divide `ranks`) -> `ulysses_attention` or `gathered_kv_attention`, both `(q, k, v, shard, group)`."""
    if method == "auto":
        method = "ulysses" if num_heads % ranks == 0 else "gather_kv"
    if method == "ulysses" and num_heads % ranks:
        raise ValueError(f"Ulysses needs the {num_heads} heads divisible by the {ranks} sequence ranks; "
                         "use method='gather_kv' or another sequence-parallel size")
    if method not in ("ulysses", "gather_kv"):
        raise ValueError(f"unknown sequence-parallel method {method!r}; expected 'ulysses', 'gather_kv' or 'auto'")
    return ulysses_attention if method == "ulysses" else gathered_kv_attention
