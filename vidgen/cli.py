"""The `vidgen` command: `generate` (a clip or an image from a prompt), `demo` (the embedded model), `train`.

Every argument and path is checked before the model is loaded; each stage's time is printed at the end.
"""

from __future__ import annotations

import argparse
import sys
import time

from vidgen.cli_args import USER_ERRORS, Parser, add_generate_args, one_line_warnings

DEMO_PROMPT = "a red circle moving right on a black background"  # the shapes world's caption template


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    from vidgen import __version__
    from vidgen.long_video_cli import DESCRIPTION as LONG_VIDEO, add_arguments as add_long_video_args
    from vidgen.parallel.cli import add_parallel_arguments  # argparse only: cheap

    parser = Parser(prog="vidgen", description="Video generation with a causal VAE and a DiT.")
    parser.add_argument("--version", action="version", version=f"vidgen {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="generate a clip (or an image) from a prompt")
    add_generate_args(gen)
    add_parallel_arguments(gen)  # --prompts, --nproc, --sp, --cfg-parallel, --vae-tile (docs/scaling.md)
    add_generate_args(sub.add_parser("demo", help="generate a clip with the embedded default model"), prompt=False)
    add_long_video_args(sub.add_parser("long-video", help="a long video as chained segments",
                                       description=LONG_VIDEO))
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
    prog = f"vidgen {args.command}"
    try:
        with one_line_warnings(prog):
            return _run(args, argv)
    except USER_ERRORS as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    if args.command == "train":
        return int(_train_cli().run(args) or 0)
    if args.command == "long-video":
        from vidgen.long_video_cli import run

        return run(args, _raise)
    if args.command == "demo":
        args.prompt = DEMO_PROMPT
    elif args.command == "generate":
        from vidgen.parallel.cli import generate as generate_parallel, wants_parallel

        if wants_parallel(args):
            return generate_parallel(args, argv)
        if args.prompt is None:
            raise ValueError("give a PROMPT (or --prompts FILE)")
    return generate(args)


def _raise(message: str):
    raise ValueError(message)


def generate(args: argparse.Namespace) -> int:
    from vidgen.cli_args import resolve_call, torch_dtype
    from vidgen.lora.cli import apply_loras
    from vidgen.video_io import check_frame_count, check_output_path

    times: dict[str, float] = {}
    # --- checks, before anything heavy ---
    output = check_output_path(args.output, args.overwrite)
    call = resolve_call(args)
    r = call.request
    check_frame_count(output, r.num_frames)

    # --- load ---
    from vidgen.pipeline import VideoPipeline

    progress = not args.no_progress
    start = time.perf_counter()
    pipe = VideoPipeline.from_pretrained(args.model, dtype=torch_dtype(args.dtype), device=args.device,
                                         progress=progress, memory=call.memory)
    apply_loras(pipe, call.loras)
    times["load"] = time.perf_counter() - start

    # --- encode text ---
    start = time.perf_counter()
    embeds = pipe.encode_prompt(args.prompt)
    negative_embeds = pipe.encode_prompt(r.negative_prompt) if r.guided else None
    times["encode text"] = time.perf_counter() - start

    # --- denoise ---
    start = time.perf_counter()
    out = pipe(prompt_embeds=embeds, negative_prompt_embeds=negative_embeds, num_frames=r.num_frames,
               height=r.height, width=r.width, num_inference_steps=r.num_inference_steps,
               guidance_scale=r.guidance_scale, shift=r.shift, sampler=r.sampler, seed=r.seed, image=call.image,
               output_type="latent", progress=progress, step_cache=call.step_cache, anchor_first=r.anchor_first,
               last_image=call.last_image, guidance_scale_2=r.guidance_scale_2, clean_anchor=args.clean_anchor)
    times["denoise"] = time.perf_counter() - start

    times.update(_decode_into(pipe, out.frames, output, r.fps, args.overwrite, progress))
    what = "image" if r.num_frames == 1 else f"{r.num_frames} frames at {r.fps:g} fps"
    print(f"wrote {output} ({what}, {r.width}x{r.height}, seed {out.seed})")
    if out.step_caches:
        skipped = sum(c.skipped for c in out.step_caches)
        total = skipped + sum(c.computed for c in out.step_caches)
        print(f"  step cache: {skipped} of {total} DiT forwards reused the cached blocks")
    print("  " + " · ".join(f"{name} {sec:.2f}s" for name, sec in times.items()))
    return 0


def _decode_into(pipe, latents, output, fps: float, overwrite: bool, progress: bool) -> dict[str, float]:
    """Decode latents (1, C, F, h, w) straight into the file, chunk by chunk; the seconds spent decoding and writing."""
    from vidgen.video_io import VideoWriter

    times = {"decode": 0.0, "write": 0.0}
    with VideoWriter(output, fps=fps, overwrite=overwrite) as writer:
        start = time.perf_counter()
        for chunk in pipe.decode_latents(latents, progress=progress):  # (1, t, H, W, 3)
            mid = time.perf_counter()
            writer.write(chunk[0])
            end = time.perf_counter()
            times["decode"] += mid - start
            times["write"] += end - mid
            start = end
        mid = time.perf_counter()
    times["write"] += time.perf_counter() - mid  # closing the file: the encoder's delayed frames
    return times


if __name__ == "__main__":
    sys.exit(main())
