"""torchrun worker: a few SGD steps on one global batch of 2 clips, single process vs 2 ranks under accelerate DDP,
torch FSDP2 (`fully_shard`) and sequence parallelism; rank 0 reports the largest weight difference of each."""

import copy

import torch
import torch.distributed as dist

from tests.distributed import report_and_exit
from vidgen.dit.config import DiTConfig
from vidgen.dit.model import DiT
from vidgen.parallel import ParallelContext
from vidgen.parallel.comm import all_reduce_gradients
from vidgen.parallel.fsdp import full_state_dict, shard_dit

STEPS, LR = 3, 0.1


def optimizer(params):
    # SGD with momentum, not Adam: Adam divides by √v, so on parameters whose gradient is ~0 it turns float rounding
    # (a batch of 2 vs two batches of 1 sum in another order) into lr-sized steps; the test is about the gradients.
    return torch.optim.SGD(params, lr=LR, momentum=0.9)


def batch():
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(2, 4, 3, 6, 6, generator=g)  # 27 tokens: uneven over 2 sequence ranks
    noise = torch.randn(x0.shape, generator=g)
    t = torch.tensor([300.0, 800.0])
    context = torch.randn(2, 5, 24, generator=g)
    return x0, noise, t, context


def loss_fn(model, x0, noise, t, context, **kwargs):
    sigma = (t / 1000)[:, None, None, None, None]
    v = model((1 - sigma) * x0 + sigma * noise, t, context, **kwargs)
    return ((v - (noise - x0)) ** 2).mean()


def train(model, step_fn):
    opt = optimizer(model.parameters())
    for _ in range(STEPS):
        step_fn(model)
        opt.step()
        opt.zero_grad()
    return model


def max_diff(a: dict, b: dict) -> float:
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


if __name__ == "__main__":
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)  # MULTI_CPU: DDP over gloo (accelerate's FSDP needs CUDA)
    torch.set_num_threads(1)
    rank = dist.get_rank()
    torch.manual_seed(0)
    base = DiT(DiTConfig.preset("tiny")).float()
    x0, noise, t, context = batch()
    mine = slice(rank, rank + 1)  # the data-parallel share of the global batch
    ref = train(copy.deepcopy(base), lambda m: loss_fn(m, x0, noise, t, context).backward()).state_dict()
    results = {}

    ddp = copy.deepcopy(base)
    opt = optimizer(ddp.parameters())
    ddp, opt = accelerator.prepare(ddp, opt)
    for _ in range(STEPS):
        accelerator.backward(loss_fn(ddp, x0[mine], noise[mine], t[mine], context[mine]))
        opt.step()
        opt.zero_grad()
    results["accelerate_ddp"] = max_diff(accelerator.unwrap_model(ddp).state_dict(), ref)

    fsdp = shard_dit(copy.deepcopy(base))
    train(fsdp, lambda m: loss_fn(m, x0[mine], noise[mine], t[mine], context[mine]).backward())
    results["fsdp2"] = max_diff(full_state_dict(fsdp), ref)

    par = ParallelContext.from_world(sp_size=2)  # both ranks: the whole batch, half the tokens each

    def sp_step(m):
        loss_fn(m, x0, noise, t, context, parallel=par).backward()
        all_reduce_gradients(m, par.sp_group)

    results["sequence_parallel"] = max_diff(train(copy.deepcopy(base), sp_step).state_dict(), ref)
    moved = max_diff(base.state_dict(), ref)
    results["moved"] = moved  # the steps must change the weights, or equality would prove nothing
    report_and_exit(results)
