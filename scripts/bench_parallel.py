"""Measure 1 rank vs 2 ranks on CPU (gloo, one thread each): the sequence-parallel DiT forward and the tile-parallel VAE
decode, alternating so machine noise hits both alike; writes the "parallel" section of docs/benchmarks.md.

    python scripts/bench_parallel.py [--docs DIR]   # launches torchrun --nproc_per_node 2 on itself
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPEATS = 3


def worker(out: str) -> None:
    import torch
    import torch.distributed as dist

    from causal_vae import CausalVAE
    from causal_vae.config import preset
    from causal_vae.tiling import Tiling
    from vidgen.dit.config import DiTConfig
    from vidgen.dit.model import DiT
    from vidgen.parallel import ParallelContext, init_distributed
    from vidgen.parallel.vae import parallel_decode

    init_distributed("gloo")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = DiTConfig.preset("shapes")
    dit = DiT(config).eval()
    x = torch.randn(1, config.in_dim, 9, 32, 32)  # 9·16·16 = 2304 tokens
    t, ctx = torch.tensor([500.0]), torch.randn(1, 16, config.text_dim)
    par = ParallelContext.from_world(sp_size=2)
    vae = CausalVAE(preset("shapes")).eval()
    z = torch.randn(1, 16, 3, 16, 16)  # 128×128 pixels, 9 frames
    tiling = Tiling(64, 16)
    jobs = {
        "dit_forward_1_rank": lambda: dit(x, t, ctx) if dist.get_rank() == 0 else None,
        "dit_forward_2_ranks": lambda: dit(x, t, ctx, parallel=par),
        "vae_decode_1_rank": lambda: vae.decode(z, tiling=tiling) if dist.get_rank() == 0 else None,
        "vae_decode_2_ranks": lambda: parallel_decode(vae, z, tiling),
    }
    times = {k: [] for k in jobs}
    with torch.no_grad():
        for rep in range(REPEATS + 1):
            for name, fn in jobs.items():
                dist.barrier()
                start = time.perf_counter()
                fn()
                dist.barrier()
                if rep > 0:  # the first round warms up
                    times[name].append(time.perf_counter() - start)
    if dist.get_rank() == 0:
        Path(out).write_text(json.dumps({k: statistics.median(v) for k, v in times.items()}))
    dist.destroy_process_group()


def main() -> None:
    from vidgen_lab.benchmarking import add_docs_arg, machine_info, write_section

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_docs_arg(p)
    args = p.parse_args()
    out = Path("bench_parallel.json").resolve()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                    __file__, "--worker", str(out)], env=env, check=True)
    t = json.loads(out.read_text())
    out.unlink()
    lines = [
        "1 rank vs 2 ranks on CPU, gloo over 127.0.0.1, one thread per rank, median of "
        f"{REPEATS} alternating rounds ({machine_info()}).",
        "",
        "| work | 1 rank (s) | 2 ranks (s) | 2-rank / 1-rank time |",
        "|---|---|---|---|",
        f"| DiT `shapes` forward, 2304 tokens, Ulysses | {t['dit_forward_1_rank']:.3f} | {t['dit_forward_2_ranks']:.3f} | "
        f"{t['dit_forward_2_ranks'] / t['dit_forward_1_rank']:.2f} |",
        f"| VAE `shapes` decode 9×128×128, tiles of 64 | {t['vae_decode_1_rank']:.3f} | {t['vae_decode_2_ranks']:.3f} | "
        f"{t['vae_decode_2_ranks'] / t['vae_decode_1_rank']:.2f} |",
    ]
    write_section("parallel", "\n".join(lines), args.docs)
    print("\n".join(lines))


if __name__ == "__main__":
    if "--worker" in sys.argv:
        worker(sys.argv[-1])
    else:
        main()
