"""Peak memory of chained long videos does not grow with the number of segments: N = 2 vs N = 16, each in a fresh
process, on the tiny random test model (tests/tiny_pipeline.py; run from the repository root).

    python scripts/bench_long_video.py [--size 128] [--frames 5] [--context-frames 1] [--no-write]
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.tiny_pipeline

from vidgen_lab.benchmarking import add_docs_arg, machine_info, run_isolated, write_section  # noqa: E402


def run(segments: int, size: int, frames: int, context_frames: int) -> tuple[int, list[float]]:
    """(frames written, this process's peak RSS in MiB after each segment)."""
    from tests.tiny_pipeline import tiny_vidgen_pipeline
    from vidgen_lab.benchmarking import peak_rss_mib
    from vidgen.long_video import LongVideoConfig, generate_long_video

    pipe = tiny_vidgen_pipeline(height=size, width=size, num_inference_steps=1, guidance_scale=1.0)
    config = LongVideoConfig(segments=segments, frames=frames, context_frames=context_frames, seed=0)
    peaks = []
    with tempfile.TemporaryDirectory() as tmp:
        written = generate_long_video(pipe, "a red circle moves left", Path(tmp) / "long.mp4", config, drift=True,
                                      progress=False, on_segment=lambda i: peaks.append(peak_rss_mib())).frames_written
    return written, peaks


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--frames", type=int, default=5)
    p.add_argument("--context-frames", type=int, default=1)
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    add_docs_arg(p)
    args = p.parse_args()
    # glibc moves its mmap threshold up as large blocks are freed, after which activations come from a fragmenting
    # heap and peak RSS jitters by ~100 MiB between identical segments; a fixed threshold (inherited by the spawned
    # children) makes a real growth visible.
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", "65536")
    rows = []
    for n in (2, 16):
        (written, peaks), seconds, mem = run_isolated(run, n, args.size, args.frames, args.context_frames, threads=2)
        raw = written * args.size * args.size * 3 / 2**20
        growth = peaks[-1] - peaks[1]  # from the end of segment 2 to the end of the run
        rows.append((n, written, seconds, mem, raw, growth))
        print(f"N={n}: {written} frames, {seconds:.1f} s, peak RSS +{mem:.1f} MiB, after segment 2 → end "
              f"+{growth:.1f} MiB (all frames as uint8: {raw:.1f} MiB)")
    ratio = rows[1][3] / rows[0][3]
    md = "\n".join([
        "## Long video: peak memory vs number of segments (`scripts/bench_long_video.py`)",
        "",
        f"Tiny random model, {args.size}×{args.size}, {args.frames}-frame segments continuing {args.context_frames} "
        "frame(s), 1 step, pixel hand-over, drift measured; each run in a fresh process; peak RSS is counted from "
        "just before the call (model built inside it); MALLOC_MMAP_THRESHOLD_=" + os.environ["MALLOC_MMAP_THRESHOLD_"]
        + " (see the script). Machine: " + machine_info() + ".",
        "",
        "| segments | frames written | seconds | peak RSS increase (MiB) | peak growth after segment 2 (MiB) | "
        "all frames as uint8 (MiB) |",
        "|---:|---:|---:|---:|---:|---:|",
        *[f"| {n} | {w} | {s:.1f} | {m:.1f} | {g:.1f} | {r:.1f} |" for n, w, s, m, r, g in rows],
        "",
        f"Peak RSS ratio N=16 / N=2: {ratio:.3f}.",
    ])
    print(md)
    if not args.no_write:
        write_section("bench_long_video", md, args.docs)


if __name__ == "__main__":
    main()
