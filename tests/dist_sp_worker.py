"""torchrun worker: sequence-parallel DiT forward and gradients against the single-process model on every rank."""

import dataclasses

import torch
import torch.distributed as dist

from tests.distributed import report_and_exit
from vidgen.dit.config import DiTConfig
from vidgen.dit.model import DiT
from vidgen.parallel import ParallelContext, init_distributed
from vidgen.parallel.comm import all_reduce_gradients


def model(heads: int) -> DiT:
    torch.manual_seed(0)
    return DiT(dataclasses.replace(DiTConfig.preset("tiny"), num_heads=heads)).float()


def inputs(frames: int, h: int, w: int, per_frame: bool, padded_text: bool = False):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 4, frames, h, w, generator=g)
    t = torch.rand(1, frames, generator=g) * 1000 if per_frame else torch.tensor([700.0])
    context = torch.randn(1, 5, 24, generator=g)
    if padded_text:  # 3 prompt rows zero-padded to 9, as pipelines pass it: the trailing zero rows become one key
        context = torch.cat([context[:, :3], context.new_zeros(1, 6, 24)], dim=1)
    return x, t, context


def forward_case(heads, shape, per_frame, method, grads=False, checkpointing=False, padded_text=False):
    dit = model(heads)
    dit.gradient_checkpointing = checkpointing
    x, t, context = inputs(*shape, per_frame, padded_text)
    weight = torch.randn(1, 4, *shape, generator=torch.Generator().manual_seed(2))
    par = dataclasses.replace(ParallelContext.from_world(sp_size=dist.get_world_size()), sp_attention=method)
    result = {}
    with torch.set_grad_enabled(grads):
        xr = x.clone().requires_grad_(grads)
        ref = dit(xr, t, context)
        xp = x.clone().requires_grad_(grads)
        out = dit(xp, t, context, parallel=par)
    result["forward"] = (out - ref).abs().max().item()
    if grads:
        (ref * weight).sum().backward()
        ref_grads = {n: p.grad.clone() for n, p in dit.named_parameters()}
        ref_x = xr.grad.clone()
        dit.zero_grad()
        (out * weight).sum().backward()
        all_reduce_gradients(dit, par.sp_group)
        dist.all_reduce(xp.grad, group=par.sp_group)  # each rank holds its own tokens' share of the input gradient
        result["grad_params"] = max((p.grad - ref_grads[n]).abs().max().item() for n, p in dit.named_parameters())
        result["grad_params_scale"] = max(g.abs().max().item() for g in ref_grads.values())
        result["grad_x"] = (xp.grad - ref_x).abs().max().item()
    return result


CASES = {
    "even_scalar_ulysses": dict(heads=4, shape=(2, 4, 4), per_frame=False, method="ulysses"),
    "uneven_per_frame_ulysses": dict(heads=4, shape=(3, 6, 6), per_frame=True, method="ulysses"),
    "uneven_per_frame_gather_kv": dict(heads=4, shape=(3, 6, 6), per_frame=True, method="gather_kv"),
    "odd_heads_auto": dict(heads=3, shape=(3, 6, 2), per_frame=True, method="auto"),
    "one_token": dict(heads=4, shape=(1, 2, 2), per_frame=False, method="ulysses"),
    "grads_ulysses": dict(heads=4, shape=(3, 6, 6), per_frame=True, method="ulysses", grads=True, checkpointing=True),
    "grads_gather_kv": dict(heads=3, shape=(3, 6, 2), per_frame=True, method="gather_kv", grads=True),
    "padded_text_grads": dict(heads=4, shape=(3, 6, 6), per_frame=True, method="ulysses", grads=True,
                              padded_text=True),
}

if __name__ == "__main__":
    init_distributed("gloo")
    torch.set_num_threads(1)
    results = {name: forward_case(**case) for name, case in CASES.items()}
    report_and_exit(results)
