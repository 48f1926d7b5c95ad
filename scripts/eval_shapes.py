"""Evaluate a shapes-world model (default: the embedded one) and write the `eval_shapes` section of docs/benchmarks.md.

    python scripts/eval_shapes.py [--model DIR] [--parts t2v t2i vae roundtrip f2v long] [--no-write]

The standard text-to-video sample (72 seen, 42 held-out clips, `EVAL_SEED`) reads a seen rate near 85% to within a
standard error of ~4 points; to compare two models more finely, judge more clips, over several seeds (each its own
captions and noise; docs/training_shapes.md's "seeds 777-782", 864 seen / 504 held-out clips):

    python scripts/eval_shapes.py --model DIR --parts t2v --seen-clips 144 --heldout-clips 84 \
        --seed 777 778 779 780 781 782 --no-write
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from vidgen import VideoPipeline
from vidgen.cli import DEMO_PROMPT
from vidgen_lab.benchmarking import add_docs_arg, machine_info, write_section
from vidgen_lab.shapes_eval import EvalConfig, evaluate, to_markdown

PARTS = ("t2v", "t2i", "vae", "roundtrip", "f2v", "long")
parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--model", default=None, help="model folder (default: the embedded model)")
parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
parser.add_argument("--threads", type=int, help="torch CPU threads")
parser.add_argument("--steps", type=int, help="override the model's denoising steps")
parser.add_argument("--guidance", type=float, help="override the model's guidance scale")
parser.add_argument("--shift", type=float, help="override the model's shift")
parser.add_argument("--seen-clips", type=int, default=EvalConfig.seen_clips,
                    help=f"text-to-video clips from seen captions (default {EvalConfig.seen_clips})")
parser.add_argument("--heldout-clips", type=int, default=EvalConfig.heldout_clips,
                    help=f"text-to-video clips from held-out captions (default {EvalConfig.heldout_clips})")
parser.add_argument("--seed", type=int, nargs="+", default=[EvalConfig.seed],
                    help="seed of the captions, noise and fresh clips (default: EVAL_SEED, the standard one); with "
                         "several, text-to-video judges --seen-clips and --heldout-clips for each and pools them, "
                         "and the other parts use the first")
parser.add_argument("--no-readme-timing", action="store_true", help="skip timing the README's main command")
parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
add_docs_arg(parser)
args = parser.parse_args()
try:
    eval_config = EvalConfig(seen_clips=args.seen_clips, heldout_clips=args.heldout_clips, seed=args.seed[0],
                             t2v_seeds=tuple(args.seed) if len(args.seed) > 1 else ())
except ValueError as e:
    parser.error(str(e))
if "t2v" in args.parts and args.seen_clips + args.heldout_clips == 0:
    parser.error("--seen-clips and --heldout-clips are both 0: text-to-video would judge no clip")

if args.threads:
    torch.set_num_threads(args.threads)
pipe = VideoPipeline.from_pretrained(args.model)
overrides = {k: v for k, v in (("num_inference_steps", args.steps), ("guidance_scale", args.guidance),
                               ("shift", args.shift)) if v is not None}
if overrides:
    import dataclasses

    pipe.config = dataclasses.replace(pipe.config, **overrides)
result = evaluate(pipe, eval_config, tuple(args.parts))

readme_seconds = None
if not args.no_readme_timing:  # the README's main command in a fresh process, model loading included
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "vidgen", "generate", DEMO_PROMPT, "-o", str(Path(tmp) / "clip.mp4"),
               "--seed", "0", "--no-progress", *(["--model", args.model] if args.model else [])]
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, capture_output=True)
        readme_seconds = time.perf_counter() - t0

settings = (f"steps {pipe.config.num_inference_steps}, guidance {pipe.config.guidance_scale}, shift "
            f"{pipe.config.shift}, {pipe.config.num_frames} frames at {pipe.config.height}×{pipe.config.width}")
markdown = (f"### Shapes-world model (`scripts/eval_shapes.py`)\n\n{machine_info()}; {settings}.\n\n"
            + to_markdown(result, args.model or "embedded default", readme_seconds))
print(markdown)
if not args.no_write:
    write_section("eval_shapes", markdown, args.docs)
