"""`vidgen-parallel`: generate many prompts over many processes.

    torchrun --nproc_per_node 8 -m vidgen.parallel.cli --prompts prompts.txt -o clips/ --sp 4 --cfg-parallel
    python -m vidgen.parallel.cli --nproc 2 "a red circle moves left" -o clips/      # launches torchrun itself

World = data-parallel groups × guidance (1 or 2) × sequence ranks. Each prompt i becomes clips/NNNNN-slug.mp4 with
seed --seed + i, whatever the number of ranks.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys


def add_parallel_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that split generation over ranks (for `vidgen generate` to reuse)."""
    g = parser.add_argument_group("parallel")
    g.add_argument("--prompts", metavar="FILE", help="a file with one prompt per line (instead of PROMPT)")
    g.add_argument("--nproc", type=int, default=1, help="launch this many local processes with torchrun")
    g.add_argument("--sp", type=int, default=1, help="sequence-parallel ranks per sample (Ulysses attention)")
    g.add_argument("--cfg-parallel", action="store_true", help="guidance branches on two ranks")
    g.add_argument("--vae-tile", type=int, default=None, metavar="PIXELS",
                   help="decode split over the sample's ranks by tiles of this size (overlap a quarter of it)")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="vidgen-parallel", description=__doc__.split("\n\n")[0])
    p.add_argument("prompt", nargs="?", help="one prompt (or use --prompts)")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--model", default=None, help="model folder (default: the embedded model)")
    p.add_argument("--frames", type=int, default=None)
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--guidance", type=float, default=None)
    p.add_argument("--seed", type=int, default=0, help="prompt i uses seed + i")
    p.add_argument("--format", default=".mp4", help="file suffix: .mp4, .webm, .gif, or .png for one frame")
    p.add_argument("--overwrite", action="store_true", help="replace existing files")
    add_parallel_arguments(p)
    args = p.parse_args(argv)
    if (args.prompt is None) == (args.prompts is None):
        p.error("give exactly one of PROMPT or --prompts FILE")
    return args


def relaunch(argv: list[str], nproc: int) -> int:
    """Run this command again under torchrun on `nproc` local processes (without --nproc)."""
    rest, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            rest.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "vidgen.parallel.cli", *rest]
    return subprocess.call(cmd)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return relaunch(argv, args.nproc)
    return run(args)


def run(args: argparse.Namespace) -> int:
    from causal_vae.tiling import Tiling
    from vidgen.parallel.context import ParallelContext, init_distributed
    from vidgen.parallel.generate import generate_many, read_prompts
    from vidgen.pipeline import VideoPipeline

    init_distributed()
    tiling = None if args.vae_tile is None else Tiling(args.vae_tile, args.vae_tile // 4 // 8 * 8)
    parallel = ParallelContext.from_world(sp_size=args.sp, cfg_size=2 if args.cfg_parallel else 1, vae_tiling=tiling)
    prompts = read_prompts(args.prompts) if args.prompts else [args.prompt]
    pipe = VideoPipeline.from_pretrained(args.model)
    os.makedirs(args.output, exist_ok=True)
    settings = dict(num_frames=args.frames, height=args.height, width=args.width, num_inference_steps=args.steps,
                    guidance_scale=args.guidance)
    written = generate_many(pipe, prompts, args.output, parallel, seed=args.seed, suffix=args.format,
                            overwrite=args.overwrite, **settings)
    for path in written:
        print(path)
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
