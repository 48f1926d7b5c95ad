"""The DiT denoiser: full 3D attention over space-time patches, adaLN timestep modulation, text cross-attention.

Architecture-compatible with Wan 2.1 text-to-video (weights load through `vidgen.dit.checkpoint`), plus a timestep per
latent frame: with `t` of shape `(B, F)` every token of latent frame `f` is modulated by `t[:, f]`, so clean context
frames (`t = 0`) and noisy frames sit in one sequence.

Reading order: timestep features, token layout (how modulation and attention segments map onto tokens), attention,
block, head, the model (embed -> [shard] -> blocks -> head -> [gather] -> unpatchify), packed variable-length batches.
Sequence parallelism enters `DiT.forward` through the layout: each rank keeps its shard of the tokens, and the layout's
self-attention sees the whole sequence (vidgen/parallel/sequence.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange
from torch.utils.checkpoint import checkpoint

from vidgen.dit.checkpoint import load_dit, save_dit
from vidgen.dit.config import DiTConfig
from vidgen.dit.image import ImageEmbedding, check_image_context
from vidgen.dit.step_cache import StepCache
from vidgen.dit.text_rows import compact_text, compact_texts
from vidgen.parallel.context import ParallelContext
from vidgen.parallel.sequence import Shard, sequence_attention
from vidgen_kernels.attention import attention, cu_seqlens
from vidgen_kernels.ops import apply_rope, linear, modulate, rms_norm, rope_angles, rope_rotation

MAX_PERIOD = 10000.0  # of the sinusoidal timestep features


def timestep_features(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features `(N, dim)` = [cos(t·ω_i), sin(t·ω_i)], ω_i = MAX_PERIOD^(-i/(dim/2)), for t `(N,)`.

    Computed in fp64 (as Wan does) and returned in fp32: t reaches 1000, where fp32 angles lose ~1e-4.
    """
    half = dim // 2
    omega = MAX_PERIOD ** (-torch.arange(half, dtype=torch.float64, device=t.device) / half)
    angles = torch.outer(t.double(), omega)  # (N, half)
    return torch.cat([angles.cos(), angles.sin()], dim=-1).float()


def timestep_groups(t: torch.Tensor) -> torch.Tensor:
    """t `(B,)` or `(B, F)` -> `(B, G)`, one timestep per modulation group. When every sample's per-frame timesteps
    are equal they become one group per sample, so that case computes exactly what the scalar case does."""
    if t.ndim == 2 and bool((t == t[:, :1]).all()):
        return t[:, :1]
    return t if t.ndim == 2 else t[:, None]


@dataclass(frozen=True)
class TokenLayout:
    """How a token sequence `(B, S, D)` is cut.

    group_sizes: consecutive runs of tokens that share one timestep modulation (one run per sample for a scalar t,
        one per latent frame for per-frame t); sum is S.
    cu_seqlens / cu_seqlens_context: packed batches only (B = 1): where each sample's tokens / text tokens start.
    context_repeats: how many identical text keys each context row stands for, `(L,)` (or packed `(ΣL_i,)`) int64,
        when trailing zero rows were dropped (vidgen/dit/text_rows.py); None when every row is its own key.
    self_attention: replaces the self-attention kernel when the tokens are one shard of a longer sequence
        (`DiT.forward` with a sequence-parallel group): `(q, k, v)` local `(B, S, H, Dh)` -> `(B, S, H, Dh)`.
    """

    group_sizes: tuple[int, ...]
    cu_seqlens: torch.Tensor | None = None
    cu_seqlens_context: torch.Tensor | None = None
    context_repeats: torch.Tensor | None = None
    self_attention: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None

    @property
    def _uniform(self) -> bool:
        return len(set(self.group_sizes)) == 1

    def _view(self, x: torch.Tensor) -> torch.Tensor:
        # (B, S, D) -> (B, G, S/G, D) when the groups are equal, so (B, G, 1, D) modulation broadcasts without a copy
        return x.unflatten(1, (len(self.group_sizes), -1)) if self._uniform else x

    def _expand(self, v: torch.Tensor) -> torch.Tensor:
        # (B, G, D) -> (B, G, 1, D), or per token (B, S, D) when the groups differ (packed batches)
        if self._uniform:
            return v[:, :, None]
        sizes = torch.tensor(self.group_sizes, device=v.device)
        return v.repeat_interleave(sizes, dim=1, output_size=sum(self.group_sizes))

    def modulate(self, x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """x `(B, S, D)`, shift/scale `(B, G, D)` -> `(B, S, D)`."""
        return modulate(self._view(x), self._expand(shift), self._expand(scale)).reshape(x.shape)

    def gated_add(self, residual: torch.Tensor, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """residual + x · gate, x and residual `(B, S, D)`, gate `(B, G, D)` per group -> `(B, S, D)`."""
        return torch.addcmul(self._view(residual), self._view(x), self._expand(gate)).reshape(x.shape)


class Linear(nn.Linear):
    """nn.Linear through `vidgen_kernels.ops.linear` (half precision in fp32 on CPUs without half matmul units)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)


class MLP(nn.Module):
    """fc1 -> activation -> fc2 (the text embedding, the time embedding and the block's feed-forward)."""

    def __init__(self, dim_in: int, dim_hidden: int, dim_out: int, activation: nn.Module):
        super().__init__()
        self.fc1 = Linear(dim_in, dim_hidden)
        self.act = activation
        self.fc2 = Linear(dim_hidden, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def _attend(q, k, v, cu_q, cu_k, key_repeats=None):
    """q `(B, Sq, H, Dh)`, k/v `(B, Sk, H, Dh)` -> `(B, Sq, H, Dh)`; packed when cu_seqlens are given (B = 1).
    key_repeats `(Sk,)`: key j counts as that many identical keys."""
    if cu_q is None:
        return attention(q, k, v, key_repeats=key_repeats)
    return attention(q[0], k[0], v[0], cu_seqlens_q=cu_q, cu_seqlens_k=cu_k, key_repeats=key_repeats)[None]


class SelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qk_norm: bool, eps: float):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = Linear(dim, 3 * dim)  # one matmul for q, k, v: exact, and faster than three
        self.norm_q = RMSNorm(dim, eps) if qk_norm else nn.Identity()
        self.norm_k = RMSNorm(dim, eps) if qk_norm else nn.Identity()
        self.out = Linear(dim, dim)

    def forward(self, x: torch.Tensor, rope: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
        """x `(B, S, D)`, rope `(S, Dh/2)` complex -> `(B, S, D)`."""
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q, k = self.norm_q(q), self.norm_k(k)  # over the full width D, before the head split (as Wan)
        q, k, v = (rearrange(z, "b s (h d) -> b s h d", h=self.num_heads) for z in (q, k, v))
        # Under autocast the norms return fp32 while v is half: attention takes one dtype (a no-op otherwise).
        q, k = apply_rope(q, rope).to(v.dtype), apply_rope(k, rope).to(v.dtype)
        if layout.self_attention is not None:
            out = layout.self_attention(q, k, v)
        else:
            out = _attend(q, k, v, layout.cu_seqlens, layout.cu_seqlens)
        return self.out(rearrange(out, "b s h d -> b s (h d)"))


class CrossAttention(nn.Module):
    """Attention to the text context; with `image` (Wan 2.1 I2V) also to image tokens, with their own keys and values
    and the same query, the two results summed before the output projection."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool, eps: float, image: bool = False):
        super().__init__()
        self.num_heads = num_heads
        self.q = Linear(dim, dim)
        self.kv = Linear(dim, 2 * dim)
        self.norm_q = RMSNorm(dim, eps) if qk_norm else nn.Identity()
        self.norm_k = RMSNorm(dim, eps) if qk_norm else nn.Identity()
        self.out = Linear(dim, dim)
        if image:
            self.kv_img = Linear(dim, 2 * dim)
            self.norm_k_img = RMSNorm(dim, eps) if qk_norm else nn.Identity()

    def _heads(self, z: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return rearrange(z.to(dtype), "b s (h d) -> b s h d", h=self.num_heads)

    def forward(self, x: torch.Tensor, context: torch.Tensor, layout: TokenLayout,
                image: torch.Tensor | None = None) -> torch.Tensor:
        """x `(B, S, D)`, context `(B, L, D)` (already embedded; L counts kept rows, see layout.context_repeats),
        image `(B, L_img, D)` embedded image tokens or None -> `(B, S, D)`."""
        q = self.norm_q(self.q(x))
        k, v = self.kv(context).chunk(2, dim=-1)
        k = self.norm_k(k)
        q, k, v = (self._heads(z, v.dtype) for z in (q, k, v))
        out = _attend(q, k, v, layout.cu_seqlens, layout.cu_seqlens_context, layout.context_repeats)
        if image is not None:
            k_img, v_img = self.kv_img(image).chunk(2, dim=-1)
            k_img, v_img = self._heads(self.norm_k_img(k_img), v.dtype), self._heads(v_img, v.dtype)
            out = out + attention(q, k_img, v_img)
        return self.out(rearrange(out, "b s h d -> b s (h d)"))


class DiTBlock(nn.Module):
    """adaLN-modulated self-attention, un-modulated text cross-attention, adaLN-modulated GELU-tanh feed-forward."""

    def __init__(self, c: DiTConfig):
        super().__init__()
        self.eps = c.eps
        self.self_attn = SelfAttention(c.dim, c.num_heads, c.qk_norm, c.eps)
        self.cross_norm = nn.LayerNorm(c.dim, eps=c.eps) if c.cross_attn_norm else nn.Identity()
        self.cross_attn = CrossAttention(c.dim, c.num_heads, c.qk_norm, c.eps, image=c.image_dim is not None)
        self.ffn = MLP(c.dim, c.ffn_dim, c.dim, nn.GELU(approximate="tanh"))
        # Per-block learned offsets of (shift, scale, gate) x (attention, feed-forward), added to the time modulation.
        self.modulation = nn.Parameter(torch.randn(1, 6, c.dim) / c.dim**0.5)

    def forward(
        self,
        x: torch.Tensor,
        time_mod: torch.Tensor,
        context: torch.Tensor,
        rope: torch.Tensor,
        layout: TokenLayout,
        image: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x `(B, S, D)`, time_mod `(B, G, 6, D)` fp32, context `(B, L, D)`, rope `(S, Dh/2)` complex, image tokens
        `(B, L_img, D)` or None -> `(B, S, D)`."""
        mod = (self.modulation.float() + time_mod).to(x.dtype)  # (B, G, 6, D)
        shift_a, scale_a, gate_a, shift_f, scale_f, gate_f = mod.unbind(2)  # each (B, G, D)
        width = x.shape[-1:]
        h = layout.modulate(F.layer_norm(x, width, eps=self.eps), shift_a, scale_a)
        x = layout.gated_add(x, self.self_attn(h, rope, layout), gate_a)
        x = x + self.cross_attn(self.cross_norm(x), context, layout, image)
        h = layout.modulate(F.layer_norm(x, width, eps=self.eps), shift_f, scale_f)
        return layout.gated_add(x, self.ffn(h), gate_f)


class Head(nn.Module):
    """Modulated LayerNorm, then a linear map to the channels of one patch."""

    def __init__(self, c: DiTConfig):
        super().__init__()
        self.eps = c.eps
        self.modulation = nn.Parameter(torch.randn(1, 2, c.dim) / c.dim**0.5)
        self.proj = Linear(c.dim, c.out_dim * math.prod(c.patch_size))

    def forward(self, x: torch.Tensor, e: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
        """x `(B, S, D)`, time embedding e `(B, G, D)` -> `(B, S, out_dim·pt·ph·pw)`.

        Outside autocast, as Wan: in a model with fp32 weights the head runs in fp32 under bf16 autocast."""
        with torch.autocast(x.device.type, enabled=False):
            mod = (self.modulation.float()[:, None] + e.float()[:, :, None]).to(x.dtype)  # (B, G, 2, D)
            shift, scale = mod.unbind(2)
            return self.proj(layout.modulate(F.layer_norm(x, x.shape[-1:], eps=self.eps), shift, scale))


class DiT(nn.Module):
    """`dit(x, t, context)`: latent `(B, C_in, F, h, w)`, t `(B,)` or `(B, F)` = 1000·σ, text `(B, L, text_dim)`
    -> velocity `(B, C_out, F, h, w)`.

    Trailing all-zero text rows (the padding of Wan pipelines) are embedded and attended as one key counted L − n
    times (vidgen/dit/text_rows.py): exact, and the text side of every block costs n + 1 rows instead of L."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        c = self.config = config
        self.patch_embedding = nn.Conv3d(c.in_dim, c.dim, kernel_size=c.patch_size, stride=c.patch_size)
        self.text_embedding = MLP(c.text_dim, c.dim, c.dim, nn.GELU(approximate="tanh"))
        self.time_embedding = MLP(c.freq_dim, c.dim, c.dim, nn.SiLU())
        self.time_modulation = Linear(c.dim, 6 * c.dim)  # applied to SiLU(time embedding)
        self.image_embedding = ImageEmbedding(c) if c.image_dim is not None else None
        self.blocks = nn.ModuleList(DiTBlock(c) for _ in range(c.num_layers))
        self.head = Head(c)
        self.gradient_checkpointing = False  # recompute each block in backward instead of storing its activations

    # ---- pieces of the forward -------------------------------------------------------------------------------------

    def embed_patches(self, x: torch.Tensor) -> torch.Tensor:
        """x `(B, C_in, F, h, w)` -> tokens `(B, F'·h'·w', D)`, ordered (f h w)."""
        # The stride = kernel Conv3d is a linear map of each patch; as a matmul it is faster, and in bf16 on CPU
        # it avoids the slow low-precision Conv3d kernels.
        pt, ph, pw = self.config.patch_size
        patches = rearrange(x, "b c (f pt) (h ph) (w pw) -> b (f h w) (c pt ph pw)", pt=pt, ph=ph, pw=pw)
        weight = self.patch_embedding.weight
        # The residual stream keeps the weights' dtype: fp32 under bf16 autocast (as Wan), only matmuls go half.
        return linear(patches, weight.flatten(1), self.patch_embedding.bias).to(weight.dtype)

    def unpatchify(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """x `(B, F'·h'·w', pt·ph·pw·C_out)` -> `(B, C_out, F, h, w)`."""
        pt, ph, pw = self.config.patch_size
        f, h, w = grid
        return rearrange(
            x, "b (f h w) (pt ph pw c) -> b c (f pt) (h ph) (w pw)", f=f, h=h, w=w, pt=pt, ph=ph, pw=pw
        )

    def embed_time(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """t `(B, G)` -> time embedding e `(B, G, D)` and block modulation `(B, G, 6, D)`, both fp32.

        Outside autocast (as Wan): with fp32 weights they are computed in fp32 even under bf16 autocast."""
        dtype = self.time_embedding.fc1.weight.dtype
        with torch.autocast(t.device.type, enabled=False):
            e = self.time_embedding(timestep_features(t.flatten(), self.config.freq_dim).to(dtype))  # (B·G, D)
            mod = self.time_modulation(F.silu(e))  # (B·G, 6·D)
        e = e.float().unflatten(0, t.shape)
        return e, mod.float().unflatten(0, t.shape).unflatten(-1, (6, -1))

    def rope(self, grid: tuple[int, int, int], device) -> torch.Tensor:
        """Complex rotations `(f·h·w, Dh/2)` of the 3D RoPE over a token grid."""
        return rope_rotation(rope_angles(self.config.head_dim, grid, self.config.rope_theta, device=device))

    def run_blocks(self, x, time_mod, context, rope, layout: TokenLayout, step_cache: StepCache | None = None,
                   image: torch.Tensor | None = None):
        """The block loop, x `(B, S, D)` -> `(B, S, D)`; image: embedded image tokens `(B, L_img, D)` or None.

        With a `step_cache`, blocks 2..N may be replaced by their residual from an earlier step (see step_cache.py)."""
        args = (time_mod, context, rope, layout, image)
        if step_cache is not None:
            h = self.blocks[0](x, *args)
            first = h - x  # (B, S, D)
            rest = step_cache.lookup(first)
            if rest is not None:
                return h + rest
            x = self._run(self.blocks[1:], h, args)
            step_cache.store(first, x - h)
            return x
        return self._run(self.blocks, x, args)

    def _run(self, blocks, x, args):
        for block in blocks:
            if self.gradient_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, *args, use_reentrant=False)
            else:
                x = block(x, *args)
        return x

    # ---- forward ---------------------------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, parallel: ParallelContext | None = None,
                step_cache: StepCache | None = None, image_context: torch.Tensor | None = None) -> torch.Tensor:
        """x `(B, C_in, F, h, w)`, t `(B,)` or `(B, F)`, context `(B, L, text_dim)` -> `(B, C_out, F, h, w)`.

        `image_context`: image-encoder tokens `(B, L_img, image_dim)`, for models with image cross-attention only.

        `parallel`: a `vidgen.parallel.ParallelContext`; with a sequence-parallel group each rank runs the blocks on
        its shard of the tokens (every rank passes the same inputs and gets the same full output).
        `step_cache`: a `StepCache` of this sampling run (one per guidance branch), updated in place."""
        sharded = parallel is not None and parallel.sp_size > 1
        if sharded:
            if step_cache is not None:
                raise NotImplementedError("step caching is not supported with sequence parallelism; drop step_cache")
            attend = sequence_attention(parallel.sp_attention, self.config.num_heads, parallel.sp_size)
        t = self.check_inputs(x, t, context)
        check_image_context(self.config, image_context, x.shape[0])
        grid = self.token_grid(x)
        tokens = self.embed_patches(x)  # (B, S, D)
        t = timestep_groups(t)  # (B, G): G = 1 (scalar) or F (per frame)
        e, time_mod = self.embed_time(t)  # (B, G, D), (B, G, 6, D)
        context, repeats = compact_text(context)  # (B, L, text_dim) -> (B, L', text_dim), L' <= L
        layout = TokenLayout((tokens.shape[1] // t.shape[1],) * t.shape[1], context_repeats=repeats)
        rope = self.rope(grid, x.device)  # (S, Dh/2)
        if sharded:  # from here on this rank holds n = ⌈S/P⌉ tokens, and the modulation groups they fall in
            shard = Shard(tokens.shape[1], parallel.sp_size, parallel.sp_rank)
            g0, g1, sizes = shard.local_groups(layout.group_sizes)
            layout = replace(layout, group_sizes=sizes,
                             self_attention=partial(attend, shard=shard, group=parallel.sp_group))
            tokens, rope = shard.take(tokens), shard.take(rope, 0)  # (B, n, D), (n, Dh/2)
            e, time_mod = e[:, g0:g1], time_mod[:, g0:g1]  # (B, G', D), (B, G', 6, D)
        context = self.text_embedding(context)  # (B, L', D)
        image = None if image_context is None else self.image_embedding(image_context)  # (B, L_img, D)
        tokens = self.run_blocks(tokens, time_mod, context, rope, layout, step_cache, image)
        out = self.head(tokens, e, layout)  # (B, S, pt·ph·pw·C_out); sharded: this rank's (B, n, ...)
        if sharded:
            out = shard.gather(out, parallel.sp_group)  # every rank's (B, n, ...) -> (B, S, ...)
        return self.unpatchify(out, grid)

    def forward_packed(
        self, xs: list[torch.Tensor], ts: list[torch.Tensor | float], contexts: list[torch.Tensor]
    ) -> list[torch.Tensor]:
        """Samples of different sizes in one packed sequence, without padding; equals running each alone.

        xs[i] `(C_in, F_i, h_i, w_i)`, ts[i] scalar or `(F_i,)`, contexts[i] `(L_i, text_dim)` -> list of
        `(C_out, F_i, h_i, w_i)`.
        """
        if self.config.image_dim is not None:
            raise ValueError("forward_packed does not take image tokens; run image-conditioned models with forward")
        if not (len(xs) == len(ts) == len(contexts)) or not xs:
            raise ValueError(
                f"forward_packed needs equally long non-empty lists, got {len(xs)}, {len(ts)}, {len(contexts)} items"
            )
        grids, tokens, groups, tvals, ropes, texts = [], [], [], [], [], []
        for i, (x, t, ctx) in enumerate(zip(xs, ts, contexts)):
            t = torch.as_tensor(t, dtype=torch.float32, device=x.device)
            if x.ndim != 4 or ctx.ndim != 2:
                raise ValueError(
                    f"forward_packed sample {i}: expected x (C, F, h, w) and context (L, text_dim), got shapes "
                    f"{tuple(x.shape)} and {tuple(ctx.shape)}"
                )
            t = self.check_inputs(x[None], t.reshape(1) if t.ndim == 0 else t[None], ctx[None])
            grids.append(self.token_grid(x[None]))
            tokens.append(self.embed_patches(x[None]))  # (1, S_i, D)
            t = timestep_groups(t)[0]  # (G_i,)
            tvals.append(t)
            groups += [tokens[-1].shape[1] // len(t)] * len(t)
            ropes.append(self.rope(grids[-1], x.device))
            texts.append(ctx)
        seq_lens = [tok.shape[1] for tok in tokens]
        texts, repeats = compact_texts(texts)  # each (L_i, text_dim) -> (L'_i, text_dim); repeats (ΣL'_i,) or None
        e, time_mod = self.embed_time(torch.cat(tvals)[None])  # (1, ΣG_i, D), (1, ΣG_i, 6, D)
        layout = TokenLayout(
            tuple(groups),
            cu_seqlens(seq_lens, device=xs[0].device),
            cu_seqlens([c.shape[0] for c in texts], device=xs[0].device),
            context_repeats=repeats,
        )
        context = self.text_embedding(torch.cat(texts)[None])  # (1, ΣL'_i, D)
        rope = torch.cat(ropes)  # (ΣS_i, Dh/2)
        out = self.head(self.run_blocks(torch.cat(tokens, dim=1), time_mod, context, rope, layout), e, layout)
        return [self.unpatchify(o, g)[0] for o, g in zip(out.split(seq_lens, dim=1), grids)]

    # ---- checks ----------------------------------------------------------------------------------------------------

    def token_grid(self, x: torch.Tensor) -> tuple[int, int, int]:
        """The token grid (F', h', w') of a latent x `(B, C_in, F, h, w)`: its size over the patch size."""
        return tuple(n // p for n, p in zip(x.shape[2:], self.config.patch_size))

    def check_inputs(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Raise a ValueError that names what is wrong with `forward`'s inputs; returns t, fp32 `(B,)` or `(B, F)`."""
        c = self.config
        if x.ndim != 5 or x.shape[1] != c.in_dim:
            raise ValueError(f"DiT: x has shape {tuple(x.shape)}; expected (B, {c.in_dim}, F, h, w) latents")
        b, _, f, h, w = x.shape
        if any(n % p for n, p in zip((f, h, w), c.patch_size)):
            raise ValueError(
                f"DiT: latent size (F, h, w) = {(f, h, w)} is not divisible by the patch size {c.patch_size}; "
                f"pad or crop the latent (pixel H and W must be multiples of {8 * c.patch_size[1]})"
            )
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(b)
        if not (t.shape == (b,) or t.shape == (b, f)):
            raise ValueError(f"DiT: t has shape {tuple(t.shape)}; expected ({b},) or ({b}, {f}) for x {tuple(x.shape)}")
        if t.ndim == 2 and c.patch_size[0] != 1:
            raise ValueError(f"DiT: per-frame timesteps need temporal patch size 1, got {c.patch_size}")
        if context.ndim != 3 or context.shape[0] != b or context.shape[2] != c.text_dim:
            raise ValueError(
                f"DiT: context has shape {tuple(context.shape)}; expected ({b}, L, {c.text_dim}) text hidden states"
            )
        return t.float()

    # ---- weights ---------------------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, path: str | Path, dtype: torch.dtype | None = None, device="cpu") -> "DiT":
        """Load a diffusers `WanTransformer3DModel` folder, an original Wan 2.1 folder, or our `save_pretrained`
        folder. `dtype=None` keeps the checkpoint's floating-point dtype."""
        return load_dit(path, cls, dtype=dtype, device=device)

    def save_pretrained(self, folder: str | Path, overwrite: bool = False) -> None:
        """Write `config.json` and `model.safetensors` into `folder`."""
        save_dit(self, folder, overwrite=overwrite)
