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
    from vidgen.cli_args import resolve_call, torch_dtype
    from vidgen.video_io import check_frame_count

    prompts, targets = _prompts_and_targets(args)  # every check before torchrun, the process group or the model
    call = resolve_call(args, seeds_used=len(prompts))
    r = call.request
    for target in targets:
        check_frame_count(target, r.num_frames)
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return relaunch(argv, args.nproc)
    import torch.distributed as dist

    from causal_vae.tiling import Tiling
    from vidgen.parallel.context import ParallelContext, init_distributed
    from vidgen.lora.cli import apply_loras
    from vidgen.parallel.generate import generate_many, shared_seed
    from vidgen.pipeline import VideoPipeline

    if args.prompts:
        os.makedirs(args.output, exist_ok=True)
    init_distributed()
    tiling = None if args.vae_tile is None else Tiling(args.vae_tile, args.vae_tile // 4 // 8 * 8)
    parallel = ParallelContext.from_world(sp_size=args.sp, cfg_size=2 if args.cfg_parallel else 1, vae_tiling=tiling)
    seed = shared_seed(args.seed)
    progress = not args.no_progress
    pipe = VideoPipeline.from_pretrained(args.model, dtype=torch_dtype(args.dtype), device=args.device,
                                         progress=progress and parallel.is_main, memory=call.memory)
    apply_loras(pipe, call.loras)
    kwargs = dict(num_frames=r.num_frames, height=r.height, width=r.width, num_inference_steps=r.num_inference_steps,
                  guidance_scale=r.guidance_scale, shift=r.shift, sampler=r.sampler,
                  negative_prompt=r.negative_prompt, anchor_first=r.anchor_first, image=call.image,
                  step_cache=call.step_cache, last_image=call.last_image, guidance_scale_2=r.guidance_scale_2,
                  clean_anchor=args.clean_anchor)
    written = generate_many(pipe, prompts, targets, parallel, seed=seed, overwrite=args.overwrite, fps=r.fps,
                            progress=progress, **kwargs)
    for path in written:
        print(f"wrote {path}")
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


def _prompts_and_targets(args: argparse.Namespace) -> tuple[list[str], list[Path]]:
    """The prompts and their output files, checked (suffix, folder, existing files) without creating anything."""
    from vidgen.parallel.generate import output_paths
    from vidgen.text import read_prompts
    from vidgen.video_io import WRITABLE, check_output_path

    if args.prompt is not None and args.prompts:
        raise ValueError("give one PROMPT or --prompts FILE, not both")
    if not args.prompts:
        if args.prompt is None:
            raise ValueError("give a PROMPT (or --prompts FILE)")
        return [args.prompt], [check_output_path(args.output, args.overwrite)]
    prompts = read_prompts(args.prompts)
    if args.format.lower() not in WRITABLE:
        raise ValueError(f"--format {args.format!r} is not a file type vidgen writes; expected one of "
                         f"{list(WRITABLE)}")
    folder = Path(args.output)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"-o {str(folder)!r} must be a folder with --prompts, but it is a file")
    if not folder.exists():
        parent = next(p for p in folder.absolute().parents if p.exists())
        if not os.access(parent, os.W_OK | os.X_OK):
            raise PermissionError(f"cannot create the output folder {str(folder)!r}: {str(parent)!r} is not writable")
        return prompts, output_paths(prompts, folder, args.format)
    targets = output_paths(prompts, folder, args.format)
    for path in targets:
        check_output_path(path, args.overwrite)
    return prompts, targets
