"""Differentiable collectives used by sequence parallelism, each with its backward written out.

Only all-to-all and all-reduce are used underneath, so they run on gloo (CPU) as well as NCCL: gloo has no
reduce-scatter, and `torch.distributed.nn`'s all-gather backward relies on it.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def _all_to_all(x: torch.Tensor, group) -> torch.Tensor:
    """x `(P, ...)`: slice p goes to rank p; returns `(P, ...)` whose slice r came from rank r."""
    x = x.contiguous()
    out = torch.empty_like(x)
    dist.all_to_all_single(out, x, group=group)
    return out


class _AllToAll(torch.autograd.Function):
    # Exchanging slice p with rank p is its own inverse, so the backward is the same exchange.
    @staticmethod
    def forward(ctx, x, group):
        ctx.group = group
        return _all_to_all(x, group)

    @staticmethod
    def backward(ctx, grad):
        return _all_to_all(grad, ctx.group), None


def all_to_all(x: torch.Tensor, group) -> torch.Tensor:
    """Differentiable exchange of the leading axis `(P, ...)` -> `(P, ...)` (slice r of the result came from rank r)."""
    return _AllToAll.apply(x, group)


def _gather(x: torch.Tensor, group) -> torch.Tensor:
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, x.contiguous(), group=group)
    return torch.stack(parts)


class _GatherShared(torch.autograd.Function):
    # Every rank uses the gathered tensor differently (e.g. its queries against all keys): the gradient of my slice is
    # the sum of what every rank's use contributes to it.
    @staticmethod
    def forward(ctx, x, group):
        ctx.group = group
        return _gather(x, group)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        dist.all_reduce(grad, group=ctx.group)
        return grad[dist.get_rank(ctx.group)], None


class _GatherReplicated(torch.autograd.Function):
    # Every rank computes the same thing from the gathered tensor (e.g. the same loss): each already holds the whole
    # gradient, and my slice of it is mine.
    @staticmethod
    def forward(ctx, x, group):
        ctx.group = group
        return _gather(x, group)

    @staticmethod
    def backward(ctx, grad):
        return grad[dist.get_rank(ctx.group)], None


def gather_shared(x: torch.Tensor, group) -> torch.Tensor:
    """x `(...)` -> `(P, ...)`; backward sums the gradient over ranks (for tensors each rank uses differently)."""
    return _GatherShared.apply(x, group)


def gather_replicated(x: torch.Tensor, group) -> torch.Tensor:
    """x `(...)` -> `(P, ...)`; backward keeps the local slice (for tensors every rank uses identically)."""
    return _GatherReplicated.apply(x, group)


def all_reduce_gradients(module: torch.nn.Module, group) -> None:
    """Sum each parameter's gradient over `group` in place. Under sequence parallelism each rank's backward sees only
    its own tokens' share of every (replicated) weight's gradient; the sum is the full gradient."""
    if group is None:
        return
    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad, group=group)
