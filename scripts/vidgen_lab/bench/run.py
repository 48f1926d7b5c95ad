"""The benchmark command line: ours vs diffusers side by side, a table of ratios, written to docs/benchmarks.md.

    python scripts/bench.py                      # everything, CPU, one thread (5–7 min on this shared machine)
    python scripts/bench.py --only dit,step      # parts: dit, step, vae, stream, vae22, cache
    python scripts/bench.py --device cuda        # the same on a GPU
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

from vidgen_lab.bench.common import TABLE_HEAD, check_device
from vidgen_lab.benchmarking import add_docs_arg, machine_info, parse_parts, run_isolated, write_section
from vidgen_kernels.ops import cpu_has_half_matmul

PARTS = ("dit", "step", "vae", "stream", "vae22", "cache")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.py", description="Benchmark vidgen against diffusers on the same work.")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (fails clearly when CUDA is absent)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads (default 1: on a loaded shared machine a second thread mostly measures waiting "
                        "for the scheduler; see docs/benchmarks.md)")
    p.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts of {PARTS}")
    p.add_argument("--repeats", type=int, default=3, help="minimum timed rounds per implementation (the VAE, seconds per call, takes at most 2)")
    p.add_argument("--quick", action="store_true", help="tiny sizes and one repeat, to check the command runs")
    p.add_argument("--section", default=None,
                   help="section of docs/benchmarks.md to write (default: bench, or bench_<parts> for a subset)")
    p.add_argument("--no-write", action="store_true", help="print only, leave docs/benchmarks.md alone")
    add_docs_arg(p)
    args = p.parse_args(argv)
    args.parts = parse_parts(p, args.only, PARTS)
    if args.section is None:
        args.section = "bench" if set(args.parts) == set(PARTS) else "bench_" + "_".join(args.parts)
    if args.threads < 1 or args.repeats < 1:
        p.error("--threads and --repeats must be >= 1")
    return args


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    device = check_device(args.device)
    torch.set_num_threads(args.threads)
    repeats = 1 if args.quick else args.repeats
    start = time.perf_counter()

    def memory(fn, *fn_args):
        return run_isolated(fn, *fn_args, threads=args.threads)[0]

    rows, extra = [], []

    def emit(row):
        rows.append(row)
        print(row.markdown(), flush=True)

    if "dit" in args.parts or "step" in args.parts:
        from vidgen_lab.bench import dit

        cases = ("shapes",) if args.quick else tuple(dit.CASES)
        for part, bench in (("dit", dit.bench_forward), ("step", dit.bench_step)):
            if part in args.parts:
                for case in cases:
                    for dtype_name in ("fp32", "bf16"):
                        emit(bench(case, dtype_name, device, repeats, None if args.quick else memory))
    if "vae" in args.parts or "stream" in args.parts:
        from vidgen_lab.bench import vae

        with tempfile.TemporaryDirectory() as tmp:
            if "vae" in args.parts:
                cfg, shape = (vae.BF16_CONFIG, vae.BF16_VIDEO) if args.quick else (vae.BENCH_CONFIG, vae.BENCH_VIDEO)
                vae.save_reference(cfg, f"{tmp}/bench")
                label = f"{shape[2]}×{shape[3]}×{shape[4]}"
                for row in vae.bench_ops(f"{tmp}/bench", cfg, shape, "fp32", device, min(repeats, 2),
                                         None if args.quick else memory, label):
                    emit(row)
                vae.save_reference(vae.BF16_CONFIG, f"{tmp}/bf16")
                s = vae.BF16_VIDEO
                for row in vae.bench_ops(f"{tmp}/bf16", vae.BF16_CONFIG, s, "bf16", device, 1, None,
                                         f"tiny (base_dim {vae.BF16_CONFIG.base_dim}) {s[2]}×{s[3]}×{s[4]}"):
                    emit(row)
            if "stream" in args.parts:
                extra.append(_stream_table(vae, tmp, args.quick, vae.STREAM_CONFIG, vae.STREAM_SIZE))
    if "vae22" in args.parts:
        from vidgen_lab.bench import vae

        with tempfile.TemporaryDirectory() as tmp:
            cfg, shape = (vae.STREAM22_CONFIG, (1, 3, 5, 64, 64)) if args.quick else (vae.BENCH22_CONFIG,
                                                                                      vae.BENCH22_VIDEO)
            vae.save_reference(cfg, f"{tmp}/bench22")
            for row in vae.bench_ops(f"{tmp}/bench22", cfg, shape, "fp32", device, min(repeats, 2),
                                     None if args.quick else memory, f"Wan 2.2 VAE, {shape[2]}×{shape[3]}×{shape[4]}",
                                     ops=None if args.quick else vae.BENCH22_OPS):
                emit(row)
            extra.append(_stream_table(vae, tmp, args.quick, vae.STREAM22_CONFIG, vae.STREAM22_SIZE, "Wan 2.2 "))
    if "cache" in args.parts:
        extra.append(_cache_tables(args.quick))

    text = _report(args, rows, extra, time.perf_counter() - start)
    print(text)
    if not (args.no_write or args.quick):
        print(f"wrote {write_section(args.section, text, args.docs)}")
    return text


def _stream_table(vae, tmp: str, quick: bool, cfg, size: int, kind: str = "") -> str:
    """Peak memory of decoding 8 and 64 latent frames into an mp4: streamed (ours) vs one-shot (diffusers)."""
    lengths, size = ((2, 4), 2 * cfg.spatial_compression) if quick else (vae.STREAM_LENGTHS, size)
    folder = f"{tmp}/stream{kind.strip()}"
    vae.save_reference(cfg, folder)
    mem = {(impl, n): run_isolated(vae.decode_to_mp4, impl, folder, n, size, f"{tmp}/{impl}{n}.mp4", threads=1)[0]
           for impl in ("ours", "diffusers") for n in lengths}
    a, b = lengths
    lines = [f"Streaming decode into an mp4 (PyAV, mpeg4), {size}×{size}, {kind}VAE base_dim {cfg.base_dim}"
             f"{f', decoder_base_dim {cfg.decoder_base_dim}' if cfg.decoder_base_dim else ''}, "
             f"num_res_blocks {cfg.num_res_blocks}; peak RSS growth during the decode, fresh process each, glibc's "
             "mmap threshold fixed (`vidgen_lab.bench.vae.steady_allocator`):",
             "", f"| implementation | {a} latent frames MiB | {b} latent frames MiB | ratio {b}/{a} |", "|---|---:|---:|---:|"]
    for impl, label in (("ours", "ours, stream_decode → sink"), ("diffusers", "diffusers, decode() then write")):
        lines.append(f"| {label} | {mem[impl, a]:.0f} | {mem[impl, b]:.0f} | {mem[impl, b] / mem[impl, a]:.2f} |")
    return "\n".join(lines)


def _cache_tables(quick: bool) -> str:
    from vidgen_lab.bench import step_cache as sc
    from vidgen.model_folder import DEFAULT_MODEL_DIR, OUR_CONFIG

    c = sc.WAN_NARROW
    steps = 4 if quick else sc.STEPS
    results = sc.latent_tradeoff(sc.wan_narrow(), thresholds=(0.0, 0.1) if quick else sc.THRESHOLDS, steps=steps)
    parts = [f"Step cache (`step_cache=StepCacheConfig(threshold)`, `--step-cache`), random Wan-shaped DiT: "
             f"{c.num_layers} blocks (Wan 2.1 1.3B's depth), head dim {c.head_dim}, FFN {c.ffn_dim / c.dim:.1f}× "
             f"width, width {c.dim}; {sc.WAN_NARROW_LATENT[1:]} latent ({80} tokens), {steps} Euler steps, shift "
             f"{sc.SHIFT:g}, CFG {sc.GUIDANCE:g} (branches batched, one cache); PSNR over the final latents:",
             "", sc.markdown(results)]
    if (DEFAULT_MODEL_DIR / OUR_CONFIG).is_file() and not quick:
        from vidgen.cli import DEMO_PROMPT
        from vidgen.pipeline import VideoPipeline

        pipe = VideoPipeline.from_pretrained(device="cpu")
        results = sc.pipeline_tradeoff(pipe, DEMO_PROMPT)
        parts += ["", f"The embedded default model, `VideoPipeline` defaults ({pipe.config.num_inference_steps} steps, "
                      f"CFG {pipe.config.guidance_scale:g}), prompt \"{DEMO_PROMPT}\"; PSNR over the "
                      "decoded frames:", "", sc.markdown(results)]
    else:
        parts += ["", "The embedded default model is not installed here; with it, run "
                      "`python scripts/bench.py --only cache` to add its table."]
    return "\n".join(parts)


def _report(args, rows, extra, seconds: float) -> str:
    """The full run: title, machine, method, configs, table, extra tables, notes. A subset (`--only`): one line
    saying what was run (machine and the configs of the parts run), then its table(s)."""
    full = set(args.parts) == set(PARTS)
    units = f"; bf16 matmul units: {'yes' if cpu_has_half_matmul() else 'no'}" if args.device == "cpu" else ""
    machine = (f"Machine: {machine_info()}{units}; device {args.device}; 1-minute load average "
               f"{os.getloadavg()[0]:.1f} at the end; whole run {seconds / 60:.1f} min"
               f"{' — QUICK, not representative' if args.quick else ''}.")
    setup = _setup(args.parts)
    if full:
        method = METHOD.format(repeats=1 if args.quick else args.repeats)
        head = ["## vidgen vs diffusers, side by side (`scripts/bench.py`)", "", machine, "", method, "", setup]
    else:
        head = [f"## `scripts/bench.py --only {','.join(args.parts)}`", "", f"{machine} {setup}".strip()]
    table = [TABLE_HEAD, *(r.markdown() for r in rows)] if rows else []
    blocks = ["\n".join(head), "\n".join(table), *extra] + ([NOTES] if full else [])
    return "\n\n".join(b for b in blocks if b)


METHOD = (
    "Same configs, weights and inputs for both; times are the fastest of {repeats}–15 rounds alternating the implementations "
    "after a warm-up (more rounds for short calls; on a shared machine other jobs only add time), so machine noise "
    "hits both alike; peak memory is the growth during one call in a fresh process (weights excluded). Ratios are "
    "ours ÷ diffusers: below 1 is better. GFLOP/s counts the matmuls and attention ours computes; the matmul column "
    "is the model's largest matmul shape through the same linear the model uses, the practical ceiling here."
)


def _setup(parts: tuple[str, ...]) -> str:
    """The configs of the parts run, one paragraph."""
    from vidgen_lab.bench import dit, vae

    text = []
    if "dit" in parts or "step" in parts:
        cases = "; ".join(f"{name}: dim {c.config.dim}, {c.config.num_layers} blocks, ffn {c.config.ffn_dim}, "
                          f"{c.config.num_heads} heads, latent {list(c.latent)} → {c.tokens} tokens, {c.text}"
                          for name, c in dit.CASES.items())
        text.append(f"DiT cases — {cases}. Text as `WanPipeline` passes it: the prompt's hidden states zero-padded to "
                    f"{dit.WAN_TEXT_LEN} rows (random values here), the same tensors to both.")
    if "step" in parts:
        text.append(f"Pipeline step: step {dit.STEPS // 2} of a {dit.STEPS}-step Euler schedule, shift {dit.SHIFT:g}, "
                    "negative prompt empty (one row, the end-of-sequence token, then zeros); ours = "
                    "`VideoPipeline`'s batched-guidance model under `sample_euler`, diffusers = `WanPipeline`'s loop "
                    "body (two transformer calls, guidance, `FlowMatchEulerDiscreteScheduler.step`); its difference "
                    "is of the update.")
    if "vae" in parts:
        v = vae.BENCH_CONFIG
        text.append(f"VAE: base_dim {v.base_dim}, dim_mult {list(v.dim_mult)}, num_res_blocks {v.num_res_blocks} "
                    "(Wan 2.1's structure at a third of its width); bf16 only at a tiny size, because bf16 Conv3d on "
                    "a CPU without bf16 units is ~40× slower than fp32.")
    if "vae22" in parts:
        v = vae.BENCH22_CONFIG
        text.append(f"Wan 2.2 VAE: residual levels, 2×2 patches (16× in space), z_dim {v.z_dim}, base_dim "
                    f"{v.base_dim}, decoder_base_dim {v.decoder_base_dim}, dim_mult {list(v.dim_mult)}, num_res_blocks "
                    f"{v.num_res_blocks} (Wan2.2-TI2V-5B's VAE, 160 / 256 wide, at a fifth of its width).")
    return " ".join(text)


NOTES = """\
Reading the table, and what changed (each change: prediction, then measurement, kept only if it held):

- **One thread by default.** With 2 threads on this machine, shared with other jobs, the `shapes` fp32 forward took
  524 ms against 34 ms with one thread: each parallel region waits for a descheduled thread, so a 2-thread run
  mostly counts scheduler waits and rewards whichever implementation issues fewer ops (the earlier `bench_dit`
  figures of 1.4× were of that kind). `--threads 2` is there for an idle machine.
- **bf16 on a CPU without bf16 units** (`torch.ops.mkldnn._is_mkldnn_bf16_supported()` False: "bf16 matmul units: no"
  in the machine line; measured on an AVX2 AMD EPYC). A bf16 matmul there is emulated, ~10× slower than fp32 (80×192 @
  192×768: 3.1 ms vs 0.34 ms with the conversions). Prediction: computing the DiT's linears in fp32 and rounding once
  (`vidgen_kernels.ops.linear`; the products of bf16 inputs are exact in fp32, both paths accumulate in fp32) takes
  the bf16 forward from 0.94× to ~0.3× of diffusers' time. Measured: see the bf16 DiT rows. Same for attention (SDPA
  in fp32: 140 vs 197 µs at 80 tokens). Price: bf16 peak memory above diffusers' (the fp32 copy of one weight and one
  output at a time); on a CPU with bf16 units, or CUDA, the native path runs and nothing is copied.
- **fp32 DiT forward on the same arithmetic: at parity** (the `medium_unpadded` rows). Both implementations run
  the same matmuls, which take 50–80% of the time at ~80 GFLOP/s, the fp32 peak of one AVX2 core (see the matmul
  column); the fused q|k|v, complex RoPE and addcmul modulation save dispatches (which is what a contended 2-thread
  run rewards) but not arithmetic. The guided step gains by running both guidance branches in one batched forward
  where `WanPipeline` makes two calls.
- **Zero-padded text rows computed once** (`vidgen/dit/text_rows.py`). Wan pipelines pass 512 text rows whose rows
  past the prompt are exact zeros; after the text embedding they are one vector, so in every block their keys and
  values are identical, and softmax over m identical keys is softmax over one of them with logit + log m. Our DiT
  embeds and attends the prompt's rows plus one zero row counted 512 − n times (an additive mask in SDPA; exact,
  tested against the full computation to 1e-5 relative; FlashAttention, which takes no mask, gets the keys expanded
  back). Prediction from the FLOP count for 24 prompt rows: 28% of the `medium` forward saved, up to 55% of the
  `shapes` one (less, as its per-op overhead stays). Measured, ours with vs without it in one alternating run: 26%
  and 33%; against diffusers, see the padded rows. With unpadded text nothing changes. Further: the text keys/values are the
  same at every step and could be kept across steps (not done; after this they are a small share).
- **The fp32 peak-memory excess** (+15% reported earlier, from the fused q|k|v buffer) does not reappear at one
  thread: fp32 forward memory is at or below diffusers'. The guided step's memory is higher by design: both
  branches in one batched forward hold twice one branch's activations (`batch_guidance=False` trades the
  speed back for memory).
- **bf16 step difference** (~7e-2 of the update): diffusers' `FlowMatchEulerDiscreteScheduler.step` rounds the
  latents to the model's dtype (`prev_sample.to(model_output.dtype)`); ours keeps them fp32. The forwards themselves
  agree to 4e-3 (the bf16 DiT rows).
- **Autocast as Wan draws it** (CUDA; tested on CPU autocast): time embedding, modulation, LayerNorms, the residual
  stream and the head in fp32 in a model with fp32 weights; matmuls and attention in bf16.
- **VAE**: decode time ≤ 0.7× and peak memory ≤ 0.5× of diffusers' (goal) — see the VAE rows; streamed decode holds
  one latent frame's activations, so its memory does not grow with length.
- **The VAE's RMS norm as a sum of squares** (`causal_vae.layers.RMSNorm`). `F.normalize(x, dim=1)`, which diffusers'
  Wan VAE uses and ours did, takes `torch.linalg.vector_norm` over the channel axis, on CPU ~30x slower than squaring
  and summing that axis (8 channels, 4×9×64×64: 21.6 ms against 0.7 ms); in a decoder training step of the shapes
  model's VAE (batch 4 of 9 frames, encoder frozen) it took 27% of the time. Prediction: a quarter off that step.
  Measured, one thread, one after the other: 0.68 s → 0.49 s; against diffusers, see the training-step row (both
  clamp to [-1, 1], as diffusers' decode does, so the latents' gradients compare). Same values and gradients as
  `F.normalize` (tests/test_vae_stream.py).
"""
