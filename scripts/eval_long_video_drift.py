"""Which chaining drifts least: the same long video with each hand-over / mitigation, and its drift table.

    python scripts/eval_long_video_drift.py "a green circle moving left on a white background" [--model DIR]
        [--segments 8] [--frames T] [--context-frames 5] [--context-noise 0.05] [--seed 0] [--steps N]
        [--out-dir DIR] [--write-section]
"""

import argparse
import tempfile

from vidgen_lab.benchmarking import add_docs_arg, machine_info, write_section


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("prompt")
    p.add_argument("--model", help="model folder (default: the embedded default model)")
    p.add_argument("--segments", type=int, default=8)
    p.add_argument("--frames", type=int)
    p.add_argument("--context-frames", type=int, default=5)
    p.add_argument("--context-noise", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int)
    p.add_argument("--out-dir", help="keep the videos here (default: a temporary folder)")
    p.add_argument("--write-section", action="store_true", help="also write docs/benchmarks.md's section")
    add_docs_arg(p)
    args = p.parse_args()

    from vidgen.long_video import LongVideoConfig, compare_chaining, comparison_table, mitigation_variants
    from vidgen.pipeline import VideoPipeline

    base = LongVideoConfig(segments=args.segments, frames=args.frames, context_frames=args.context_frames,
                           seed=args.seed, num_inference_steps=args.steps)
    pipe = VideoPipeline.from_pretrained(args.model)
    variants = mitigation_variants(args.context_frames, args.context_noise)
    with tempfile.TemporaryDirectory() as tmp:
        reports = compare_chaining(pipe, args.prompt, base, args.out_dir or tmp, variants, progress=True)
    table = comparison_table(reports)
    md = "\n".join([
        "## Long video drift by chaining method (`scripts/eval_long_video_drift.py`)", "",
        f"Model {args.model or 'embedded default'}, prompt {args.prompt!r}, {args.segments} segments, seed "
        f"{args.seed}; ΔE: CIE76 distance of a segment's mean Lab colour from segment 1's; seam jump: frame "
        f"difference across a seam ÷ within segments (1 = seamless). {machine_info()}.", "", table])
    print(md)
    if args.write_section:
        write_section("eval_long_video_drift", md, args.docs)


if __name__ == "__main__":
    main()
