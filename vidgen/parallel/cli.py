"""Parallel generation from the command line: `vidgen generate` with the options added here.

    torchrun --nproc_per_node 8 -m vidgen generate --prompts prompts.txt -o clips/ --sp 4 --cfg-parallel
    python -m vidgen generate --nproc 2 --prompts prompts.txt -o clips/         # starts torchrun itself
    torchrun --nproc_per_node 2 -m vidgen generate "a red circle" -o clip.mp4 --sp 2

World = data-parallel groups × guidance (1 or 2) × sequence ranks. With --prompts, -o is a folder and prompt i becomes
NNNNN-slug.mp4 (--format) with seed --seed + i, whatever the number of ranks.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path


def add_parallel_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that split generation over ranks."""
    g = parser.add_argument_group("parallel (see docs/scaling.md)")
    g.add_argument("--prompts", metavar="FILE", help="one prompt per line; -o is then a folder")
    g.add_argument("--format", default=".mp4", help="file suffix with --prompts: .mp4, .webm, .gif, or .png (1 frame)")
    g.add_argument("--nproc", type=int, default=1, help="start this many local processes with torchrun")
    g.add_argument("--sp", type=int, default=1, help="sequence-parallel ranks per sample (Ulysses attention)")
    g.add_argument("--cfg-parallel", action="store_true", help="guidance branches on two ranks")
    g.add_argument("--vae-tile", type=int, default=None, metavar="PIXELS",
                   help="split the decode over a sample's ranks by tiles of this size (overlap a quarter of it)")


def wants_parallel(args: argparse.Namespace) -> bool:
    return bool(args.prompts or args.nproc > 1 or args.sp > 1 or args.cfg_parallel or args.vae_tile
                or "WORLD_SIZE" in os.environ)


def relaunch(argv: list[str], nproc: int) -> int:
    """Run `python -m vidgen ARGV` again under torchrun on `nproc` local processes (without --nproc)."""
    rest, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            rest.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "vidgen", *rest]
    return subprocess.call(cmd)


def generate(args: argparse.Namespace, argv: list[str]) -> int:
    """`vidgen generate` over ranks (args as parsed by vidgen.cli with `add_parallel_arguments`)."""
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return relaunch(argv, args.nproc)
    import torch
    import torch.distributed as dist

    from causal_vae.tiling import Tiling
    from vidgen.parallel.context import ParallelContext, init_distributed
    from vidgen.parallel.generate import generate_many, output_paths, shared_seed
    from vidgen.text import read_prompts
    from vidgen.pipeline import VideoPipeline

    if args.prompt is not None and args.prompts:
        raise ValueError("give one PROMPT or --prompts FILE, not both")
    if args.prompts:
        prompts = read_prompts(args.prompts)
        os.makedirs(args.output, exist_ok=True)
        targets = output_paths(prompts, args.output, args.format)
    else:
        prompts, targets = [args.prompt], [args.output]
    init_distributed()
    tiling = None if args.vae_tile is None else Tiling(args.vae_tile, args.vae_tile // 4 // 8 * 8)
    parallel = ParallelContext.from_world(sp_size=args.sp, cfg_size=2 if args.cfg_parallel else 1, vae_tiling=tiling)
    seed = shared_seed(args.seed)
    from vidgen.cli import _DTYPES, _read_image

    dtype = getattr(torch, _DTYPES[args.dtype]) if getattr(args, "dtype", None) else None
    image = _read_image(Path(args.image)) if getattr(args, "image", None) else None
    pipe = VideoPipeline.from_pretrained(args.model, dtype=dtype, device=getattr(args, "device", None))
    call = dict(num_frames=args.frames, height=args.height, width=args.width, num_inference_steps=args.steps,
                guidance_scale=args.guidance, shift=getattr(args, "shift", None),
                sampler=getattr(args, "sampler", "euler"), negative_prompt=getattr(args, "negative_prompt", None),
                image=image)
    written = generate_many(pipe, prompts, targets, parallel, seed=seed, overwrite=args.overwrite,
                            fps=getattr(args, "fps", None), progress=not getattr(args, "no_progress", False), **call)
    for path in written:
        print(f"wrote {path}")
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0
