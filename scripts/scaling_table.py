"""Print docs/scaling.md's tables: per-rank memory, traffic and compute of the DiT under sequence parallelism.

    python scripts/scaling_table.py [--preset wan2.1-t2v-14b]   (default: every model below)
"""

import argparse

from vidgen.dit.config import DiTConfig
from vidgen.parallel.scaling import count_params, latent_grid, markdown_table, rank_costs

# preset -> (the clips it is used at: name -> (frames, height, width), the VAE's spatial compression, image tokens)
MODELS = {
    "wan2.1-t2v-14b": ({"480p": (81, 480, 832), "720p": (81, 720, 1280)}, 8, 0),
    # 257 CLIP tokens beside the text (first-last-frame: 514); 36 input channels cost nothing that shows here
    "wan2.1-i2v-14b": ({"480p": (81, 480, 832), "720p": (81, 720, 1280)}, 8, 257),
    # the Wan 2.2 VAE compresses space 16x (8x, after a 2x2 pixel patchify); Wan's TI2V clip is 121 frames at 24 fps
    "wan2.2-ti2v-5b": ({"720p": (121, 704, 1280)}, 16, 0),
}
RANKS = (1, 2, 4, 8)
TEMPORAL = 4

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--preset", choices=sorted(MODELS), default=None)
    args = p.parse_args()
    for preset in [args.preset] if args.preset else list(MODELS):
        clips, spatial, image_len = MODELS[preset]
        config = DiTConfig.preset(preset)
        params = count_params(config)
        print(f"{preset}: {params:,} parameters, {config.num_layers} blocks of width {config.dim}, "
              f"{config.num_heads} heads\n")
        for name, (frames, height, width) in clips.items():
            grid = latent_grid(frames, height, width, TEMPORAL, spatial)
            costs = [rank_costs(config, grid, r, params=params, image_len=image_len) for r in RANKS]
            print(f"### {preset}, {name}: {width}×{height}, {frames} frames -> latent {grid} -> "
                  f"{costs[0].tokens:,} tokens\n")
            print(markdown_table(costs) + "\n")
