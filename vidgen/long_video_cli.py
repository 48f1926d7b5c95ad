"""Command line of scripts/long_video.py: chained long videos (vidgen/long_video.py holds the logic)."""

from __future__ import annotations

import argparse
import sys

USAGE_EXAMPLE = ('python scripts/long_video.py "a green circle moving left on a white background" --segments 4 '
                 '-o long.mp4')
DESCRIPTION = "Generate a long video as chained segments, each conditioned on the end of the previous one."


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    from vidgen.cli_args import Parser

    p = Parser(prog=prog or "long_video.py", description=DESCRIPTION, epilog=f"example: {USAGE_EXAMPLE}")
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The long-video options (also `vidgen long-video`)."""
    p.add_argument("prompt", nargs="?", help="the prompt of every segment (or use --prompts)")
    p.add_argument("-o", "--output", required=True, help="output video (.mp4, .webm, ...)")
    p.add_argument("--segments", type=int, help="number of segments (default with --prompts: one per line)")
    p.add_argument("--prompts", help="text file, one prompt per segment; with fewer lines than segments the last "
                                     "line is reused for the remaining segments")
    p.add_argument("--model", help="model folder (default: the embedded default model)")
    p.add_argument("--frames", type=int, help="pixel frames per segment window, context included (1 + 4k)")
    p.add_argument("--context-frames", type=int, default=5,
                   help="frames of the previous segment each segment continues (1 + 4j; default 5)")
    p.add_argument("--handover", choices=("pixel", "latent"), default="pixel",
                   help="pixel: re-encode the last frames (valid VAE prefix); latent: hand the last clean latents "
                        "over directly and keep one decoder stream (default pixel)")
    p.add_argument("--context-noise", type=float, default=0.0, help="noise level σ of the context (augmentation)")
    p.add_argument("--color-anchor", action="store_true",
                   help="match each later segment's RGB mean/std to segment 1's")
    p.add_argument("--seed", type=int, help="segment i uses seed + i (default: random, printed)")
    p.add_argument("--height", type=int)
    p.add_argument("--width", type=int)
    p.add_argument("--steps", type=int, help="denoising steps per segment")
    p.add_argument("--guidance", type=float)
    p.add_argument("--fps", type=float, help="frames per second of the output (default: the model's)")
    p.add_argument("--clean-anchor", action="store_true",
                   help="chain a text-to-video-only model anyway (experimental: it was never trained to continue)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last finished segment")
    p.add_argument("--state-dir", help="where the per-segment resume state lives (default: OUTPUT.state/)")
    p.add_argument("--drift-report", action="store_true",
                   help="print per-segment mean Lab colour, its change from segment 1 and the seam jumps")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    p.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true",
                   help="no progress bars or segment lines")
    from vidgen.cli_args import add_memory_args

    add_memory_args(p)


def resolve_prompts(prompt: str | None, prompts_file: str | None, segments: int | None) -> tuple[list[str], int]:
    """(prompts, segments) from the arguments; ValueError with the fix when they do not fit."""
    from vidgen.text import read_prompts

    if (prompt is None) == (prompts_file is None):
        raise ValueError("give either a PROMPT or --prompts FILE (exactly one)")
    prompts = [prompt] if prompt is not None else read_prompts(prompts_file)
    if segments is None:
        if prompts_file is None:
            raise ValueError("--segments N is required with a single PROMPT")
        segments = len(prompts)
    if segments < 1:
        raise ValueError(f"--segments must be >= 1, got {segments}")
    if len(prompts) > segments:
        raise ValueError(f"{prompts_file} has {len(prompts)} prompts but --segments is {segments}; pass --segments "
                         f"{len(prompts)} (or leave it out) to use them all")
    if len(prompts) < segments and prompts_file is not None:
        print(f"note: {prompts_file} has {len(prompts)} prompt(s) for {segments} segments; the last one is reused "
              "for the rest", file=sys.stderr)
    return prompts, segments


def main(argv: list[str] | None = None) -> int:
    from vidgen.cli_args import one_line_warnings

    parser = build_parser()
    args = parser.parse_args(argv)

    def fail(message: str):
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)

    with one_line_warnings(parser.prog):
        return run(args, fail)


def run(args: argparse.Namespace, fail) -> int:
    """The long-video command on parsed arguments; `fail(message)` reports a user error and exits."""
    from vidgen.cli_args import USER_ERRORS
    from vidgen.long_video import (
        LongVideoConfig, check_long_video_model, check_long_video_output, generate_long_video,
    )
    from vidgen.model_folder import folder_kind, read_model_folder
    from vidgen.request import GenerationRequest

    try:  # every argument checked before the model is loaded
        prompts, segments = resolve_prompts(args.prompt, args.prompts, args.segments)
        config = LongVideoConfig(segments=segments, frames=args.frames, context_frames=args.context_frames,
                                 handover=args.handover, context_noise=args.context_noise,
                                 color_anchor=args.color_anchor, seed=args.seed, height=args.height,
                                 width=args.width, num_inference_steps=args.steps, guidance_scale=args.guidance,
                                 fps=args.fps, clean_anchor=args.clean_anchor)
        check_long_video_output(args.output, args.overwrite)
        folder, defaults = read_model_folder(args.model)  # no weights read yet (a repository id: its configs)
        request = GenerationRequest.resolve(
            defaults, num_frames=args.frames, height=args.height, width=args.width, num_inference_steps=args.steps,
            guidance_scale=args.guidance, seed=args.seed, fps=args.fps, seeds_used=segments)
        if segments > 1:
            from vidgen.conditioning import check_context_frames

            check_context_frames(args.context_frames, request.num_frames, request.num_frames)
        check_long_video_model(folder_kind(folder, defaults), config)
        from vidgen.cli_args import memory_options
        from vidgen.device import check_device
        from vidgen.pipeline import VideoPipeline

        check_device(args.device)
        memory = memory_options(args)
    except USER_ERRORS as e:
        fail(str(e))

    pipe = VideoPipeline.from_pretrained(args.model, device=args.device, progress=not args.quiet, memory=memory)
    try:
        result = generate_long_video(pipe, prompts, args.output, config, state_dir=args.state_dir, resume=args.resume,
                                     overwrite=args.overwrite, drift=args.drift_report, progress=not args.quiet)
    except (ValueError, FileExistsError) as e:
        fail(str(e))
    print(f"wrote {result.path} ({result.frames_written} frames, {segments} segments, seed {result.seed})")
    if result.report is not None:
        print(result.report.to_markdown())
    return 0
