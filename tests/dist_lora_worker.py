"""torchrun worker: a DiT with LoRA adapters (factors and `.diff_b` deltas) under sequence parallelism against the
single-process model on every rank."""

import torch
import torch.distributed as dist

from tests.distributed import report_and_exit
from tests.lora_files import random_lora, to_layout
from vidgen.dit.config import DiTConfig
from vidgen.dit.model import DiT
from vidgen.lora.adapters import LoraAdapters
from vidgen.parallel import ParallelContext, init_distributed

if __name__ == "__main__":
    init_distributed("gloo")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    dit = DiT(DiTConfig.preset("tiny")).eval()
    adapters = LoraAdapters(dit)
    sd = to_layout(random_lora(dit, alpha=2.0, seed=3), "wan")
    g = torch.Generator().manual_seed(4)
    sd["diffusion_model.blocks.1.ffn.2.diff_b"] = torch.randn(dit.config.dim, generator=g)
    adapters.load(sd, "a")
    adapters.load(to_layout(random_lora(dit, modules=["cross_attn.v"], seed=5), "kohya"), "b")
    adapters.set_adapters(["a", "b"], [0.7, 1.5])
    g = torch.Generator().manual_seed(1)
    x, t, context = torch.randn(1, 4, 3, 6, 6, generator=g), torch.rand(1, 3, generator=g) * 1000, \
        torch.randn(1, 5, 24, generator=g)
    parallel = ParallelContext.from_world(sp_size=dist.get_world_size())
    results = {}
    with torch.no_grad():
        ref = dit(x, t, context)
        results["unfused"] = (dit(x, t, context, parallel=parallel) - ref).abs().max().item()
        adapters.fuse()
        results["fused"] = (dit(x, t, context, parallel=parallel) - ref).abs().max().item()
    results["scale"] = ref.abs().max().item()
    report_and_exit(results)
