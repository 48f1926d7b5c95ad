"""The `vidgen` command: `generate` (a clip or an image from a prompt), `demo` (the embedded model), `train`.

Every argument and path is checked before the model is loaded; each stage's time is printed at the end.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DEMO_PROMPT = "a red circle moving right on a black background"  # the shapes world's caption template
_USER_ERRORS = (ValueError, TypeError, FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError)
_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def add_generate_args(p: argparse.ArgumentParser, prompt: bool = True) -> None:
    if prompt:
        p.add_argument("prompt", nargs="?", help="what the clip shows (or --prompts FILE)")
    p.add_argument("-o", "--output", required=prompt, default=None if prompt else "demo.mp4",
                   help="output file: .mp4, .webm, .gif, or .png/.jpg with --frames 1")
    p.add_argument("--model", default=None, help="model folder (ours or a diffusers Wan 2.1 T2V folder); "
                                                 "default: the embedded model")
    p.add_argument("--frames", type=int, default=None, help="pixel frames, 1 + 4k (1 makes an image)")
    p.add_argument("--height", type=int, default=None, help="multiple of 16")
    p.add_argument("--width", type=int, default=None, help="multiple of 16")
    p.add_argument("--steps", type=int, default=None, help="denoising steps")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (<= 1: off)")
    p.add_argument("--shift", type=float, default=None, help="timestep shift (default: the model's)")
    p.add_argument("--sampler", default="euler", help="euler or dpm++2m")
    p.add_argument("--seed", type=int, default=None, help="noise seed (default: random, printed)")
    p.add_argument("--image", default=None, help="first frame to animate (frame-to-video)")
    p.add_argument("--step-cache", type=float, default=None, metavar="THRESHOLD",
                   help="skip the deeper DiT blocks on steps whose first block changed less than THRESHOLD "
                        "(relative, e.g. 0.05; default: off)")
    p.add_argument("--anchor-first", action=argparse.BooleanOptionalAction, default=None,
                   help="text-to-video as frame 0 first, then the clip from it (default: the model's)")
    p.add_argument("--negative-prompt", default=None, help="what to steer away from (default: the model's)")
    p.add_argument("--fps", type=float, default=None, help="frames per second of the file (default: the model's)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    p.add_argument("--dtype", choices=sorted(_DTYPES), default=None,
                   help="DiT and text encoder precision (default: fp32 on CPU, bf16 on CUDA)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vidgen", description="Video generation with a causal VAE and a DiT.")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="generate a clip (or an image) from a prompt")
    add_generate_args(gen)
    from vidgen.parallel.cli import add_parallel_arguments  # argparse only: cheap

    add_parallel_arguments(gen)  # --prompts, --nproc, --sp, --cfg-parallel, --vae-tile (docs/scaling.md)
    add_generate_args(sub.add_parser("demo", help="generate a clip with the embedded default model"), prompt=False)
    # `vidgen.train.cli` is imported only when training is asked for: generation must not pay for it.
    if argv[:1] == ["train"]:
        train_cli = _train_cli()
        if train_cli is not None:
            train_cli.add_parser(sub)
            return parser
    sub.add_parser("train", help="train or fine-tune a model (vidgen train --help for its options)")
    return parser


def _train_cli():
    try:
        import vidgen.train.cli as train_cli
    except ModuleNotFoundError as e:
        if e.name not in ("vidgen.train", "vidgen.train.cli"):
            raise  # a missing dependency of the trainer is a real error; show it
        return None
    return train_cli


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train"] and _train_cli() is None:
        print("vidgen train: error: training is not available in this installation (the module vidgen.train.cli "
              "is missing)", file=sys.stderr)
        return 2
    args = build_parser(argv).parse_args(argv)
    try:
        if args.command == "train":
            return int(_train_cli().run(args) or 0)
        if args.command == "demo":
            args.prompt = DEMO_PROMPT
        elif args.command == "generate":
            from vidgen.parallel.cli import generate as generate_parallel, wants_parallel

            if wants_parallel(args):
                return generate_parallel(args, argv)
            if args.prompt is None:
                raise ValueError("give a PROMPT (or --prompts FILE)")
        return generate(args)
    except _USER_ERRORS as e:
        print(f"vidgen {args.command}: error: {e}", file=sys.stderr)
        return 2


def generate(args: argparse.Namespace) -> int:
    from vidgen.checks import check_generation_args
    from vidgen.pipeline import read_model_folder, size_for_image
    from vidgen.video_io import IMAGE_FORMATS, check_output_path

    times: dict[str, float] = {}
    # --- checks, before anything heavy ---
    output = check_output_path(args.output, args.overwrite)
    _, config = read_model_folder(args.model)  # also checks the folder
    frames = config.num_frames if args.frames is None else args.frames
    height, width = args.height, args.width
    image = None
    if args.image is not None:
        image = _read_image(Path(args.image))
        if height is None or width is None:
            height, width = size_for_image(image, height, width)
    height = config.height if height is None else height
    width = config.width if width is None else width
    steps = config.num_inference_steps if args.steps is None else args.steps
    guidance = config.guidance_scale if args.guidance is None else args.guidance
    shift = config.shift if args.shift is None else args.shift
    check_generation_args(frames, height, width, steps, guidance, shift, args.sampler)
    if args.step_cache is not None:
        from vidgen.dit.step_cache import StepCacheConfig

        StepCacheConfig(args.step_cache)  # a bad threshold fails here, not after loading the model
    if output.suffix.lower() in IMAGE_FORMATS and frames != 1:
        raise ValueError(f"{str(output)!r} is an image file but --frames is {frames}; use --frames 1, or a video "
                         "suffix such as .mp4")
    fps = config.fps if args.fps is None else args.fps

    # --- load ---
    import torch

    from vidgen.pipeline import VideoPipeline
    from vidgen.video_io import VideoWriter

    if args.no_progress:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    start = time.perf_counter()
    dtype = getattr(torch, _DTYPES[args.dtype]) if args.dtype else None
    pipe = VideoPipeline.from_pretrained(args.model, dtype=dtype, device=args.device)
    times["load"] = time.perf_counter() - start

    # --- encode text ---
    start = time.perf_counter()
    negative = config.negative_prompt if args.negative_prompt is None else args.negative_prompt
    embeds = pipe.encode_prompt(args.prompt)
    negative_embeds = pipe.encode_prompt(negative) if guidance > 1 else None
    times["encode text"] = time.perf_counter() - start

    # --- denoise ---
    start = time.perf_counter()
    progress = not args.no_progress
    out = pipe(prompt_embeds=embeds, negative_prompt_embeds=negative_embeds, num_frames=frames, height=height,
               width=width, num_inference_steps=steps, guidance_scale=guidance, shift=shift, sampler=args.sampler,
               seed=args.seed, image=image, output_type="latent", progress=progress, step_cache=args.step_cache,
               anchor_first=args.anchor_first)
    times["denoise"] = time.perf_counter() - start

    # --- decode, streamed straight into the file ---
    times["decode"] = times["write"] = 0.0
    with VideoWriter(output, fps=fps, overwrite=args.overwrite) as writer:
        start = time.perf_counter()
        for chunk in pipe.decode_latents(out.frames, progress=progress):  # (1, t, H, W, 3)
            mid = time.perf_counter()
            writer.write(chunk[0])
            end = time.perf_counter()
            times["decode"] += mid - start
            times["write"] += end - mid
            start = end
        mid = time.perf_counter()
    times["write"] += time.perf_counter() - mid
    what = "image" if frames == 1 else f"{frames} frames at {fps:g} fps"
    print(f"wrote {output} ({what}, {width}x{height}, seed {out.seed})")
    if out.step_caches:
        skipped = sum(c.skipped for c in out.step_caches)
        total = skipped + sum(c.computed for c in out.step_caches)
        print(f"  step cache: {skipped} of {total} DiT forwards reused the cached blocks")
    print("  " + " · ".join(f"{name} {sec:.2f}s" for name, sec in times.items()))
    return 0


def _read_image(path: Path):
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise FileNotFoundError(f"--image {str(path)!r} does not exist")
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except UnidentifiedImageError:
        raise ValueError(f"--image {str(path)!r} is not an image file Pillow can read") from None


if __name__ == "__main__":
    sys.exit(main())
