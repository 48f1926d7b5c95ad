"""Print docs/scaling.md's tables: per-rank memory, traffic and compute of the DiT under sequence parallelism.

    python scripts/scaling_table.py [--preset wan2.1-t2v-14b]
"""

import argparse

from causal_vae.config import VAEConfig
from vidgen.dit.config import DiTConfig
from vidgen.parallel.scaling import count_params, latent_grid, markdown_table, rank_costs

CLIPS = {"480p": (81, 480, 832), "720p": (81, 720, 1280)}  # (frames, height, width)
RANKS = (1, 2, 4, 8)

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--preset", default="wan2.1-t2v-14b")
    args = p.parse_args()
    config, vae = DiTConfig.preset(args.preset), VAEConfig()
    params = count_params(config)
    print(f"{args.preset}: {params:,} parameters, {config.num_layers} blocks of width {config.dim}, "
          f"{config.num_heads} heads\n")
    for name, (frames, height, width) in CLIPS.items():
        grid = latent_grid(frames, height, width, vae.temporal_compression, vae.spatial_compression)
        costs = [rank_costs(config, grid, r, params=params) for r in RANKS]
        print(f"### {name}: {width}×{height}, {frames} frames -> latent {grid} -> {costs[0].tokens:,} tokens\n")
        print(markdown_table(costs) + "\n")
