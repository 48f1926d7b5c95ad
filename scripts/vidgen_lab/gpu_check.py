"""One prepared device check: everything worth measuring on a lent GPU, in one command, within a time budget.

    python scripts/gpu_check.py                 # on one CUDA GPU: writes gpu_check.json and docs/benchmarks.md
    python scripts/gpu_check.py --dry-run       # every part at tiny sizes on CPU, in seconds

Parts (each guarded: a failure is recorded with its error and the next part runs; each has a time budget, and what
would overrun it is skipped and marked "over budget"):
    cuda_tests_and_parity  the CUDA-only tests (a pytest subprocess); our DiT and VAE vs diffusers', fp32 and bf16
    wan_1_3b               Wan 2.1 T2V-1.3B, 480×832, 81 frames: forward and guided step vs diffusers, FLOP/s
    vae_decode             Wan 2.1 VAE, 21 latent frames at 480×832: ours streamed vs diffusers one-shot and tiled
    wan_14b_block          one Wan 2.1 14B block at 720p, extrapolated to a whole generation
    memory_modes           1.3B / 480p guided step under none / fp8 / model offload / block offload / compile
The measurements are in `vidgen_lab.gpu_check_parts`, what they share in `vidgen_lab.gpu_check_measure`; the report's
markdown is at the end of this file. docs/gpu_check.md says how to run this on a machine without internet.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from vidgen.files import write_atomic
from vidgen_lab import gpu_check_parts as parts
from vidgen_lab.benchmarking import add_docs_arg, parse_parts, write_section
from vidgen_lab.gpu_check_measure import Budget, free_memory

SECTION = "gpu_check"
TOTAL_BUDGET_S = 360.0
# Each part's allowance, seconds. Part i must end by the sum of the allowances up to i (time an earlier part left
# unused goes to the later ones), but gets at least half its own allowance, and nothing runs past --budget.
PART_BUDGETS: dict[str, float] = {
    "cuda_tests_and_parity": 45.0,
    "wan_1_3b": 80.0,
    "vae_decode": 70.0,
    "wan_14b_block": 35.0,
    "memory_modes": 120.0,
}
PART_FNS: dict[str, Callable] = {
    "cuda_tests_and_parity": parts.cuda_tests_and_parity,
    "wan_1_3b": parts.wan_1_3b,
    "vae_decode": parts.vae_decode,
    "wan_14b_block": parts.wan_14b_block,
    "memory_modes": parts.memory_modes,
}


@dataclass(frozen=True)
class Sizes:
    """What the parts run on. `needs_*` are rough seconds of one call, for skipping what would overrun a budget."""

    dit_preset: str
    dit_latent: tuple[int, int, int, int]  # (C, F, h, w)
    dit_dtype: str
    vae_preset: str
    vae_latent: tuple[int, int, int, int]
    vae_dtype: str
    block_preset: str
    block_latent: tuple[int, int, int, int]
    matmul_n: int
    parity_dtypes_dit: tuple[str, ...]
    parity_dtypes_vae: tuple[str, ...]
    compile_backend: str
    repeats: int
    needs_dit_call: float
    needs_vae_call: float
    needs_block_call: float
    needs_compile: float

    def dit_config(self):
        from vidgen.dit.config import DiTConfig

        return DiTConfig.preset(self.dit_preset)


GPU = Sizes(
    dit_preset="wan2.1-t2v-1.3b", dit_latent=(16, 21, 60, 104), dit_dtype="bf16",  # 480×832, 81 frames: 32,760 tokens
    vae_preset="wan2.1", vae_latent=(16, 21, 60, 104), vae_dtype="bf16",
    block_preset="wan2.1-t2v-14b", block_latent=(16, 21, 90, 160),  # 720×1280, 81 frames: 75,600 tokens
    matmul_n=8192, parity_dtypes_dit=("fp32", "bf16"), parity_dtypes_vae=("fp32", "bf16"),
    compile_backend="inductor", repeats=2,
    needs_dit_call=1.0, needs_vae_call=12.0, needs_block_call=0.5, needs_compile=60.0,
)  # fmt: skip
# CPU: tiny presets and a few tokens, fp32 (bf16 Conv3d on CPU is ~40× slower, and a compiled bf16 block on a CPU
# stops at the bf16-units probe of `vidgen_kernels.ops.linear`; bf16 is still checked by the parity part);
# `compile` through the "eager" backend, which checks the wiring without inductor's minutes of C++ compilation.
DRY = Sizes(
    dit_preset="tiny", dit_latent=(4, 3, 8, 8), dit_dtype="fp32",
    vae_preset="tiny", vae_latent=(4, 3, 8, 8), vae_dtype="fp32",
    block_preset="tiny", block_latent=(4, 3, 8, 8),
    matmul_n=256, parity_dtypes_dit=("fp32", "bf16"), parity_dtypes_vae=("fp32",),
    compile_backend="eager", repeats=1,
    needs_dit_call=0.0, needs_vae_call=0.0, needs_block_call=0.0, needs_compile=0.0,
)  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="gpu_check.py", description="Measure vidgen on one CUDA GPU within a time "
                                "budget; write a JSON report and a section of docs/benchmarks.md.")
    p.add_argument("--dry-run", action="store_true",
                   help="every part at tiny sizes on CPU (seconds): checks the command, not the GPU")
    p.add_argument("--out", type=Path, default=Path("gpu_check.json"), help="the JSON report (default: %(default)s)")
    p.add_argument("--no-write", action="store_true", help="leave docs/benchmarks.md alone (the JSON is written)")
    p.add_argument("--budget", type=float, default=TOTAL_BUDGET_S,
                   help="seconds for the whole check; what would run past it is skipped (default: %(default)g)")
    p.add_argument("--only", default=",".join(PART_FNS), help=f"comma-separated parts of {tuple(PART_FNS)}")
    add_docs_arg(p)
    args = p.parse_args(argv)
    args.parts = parse_parts(p, args.only, PART_FNS)
    if args.budget <= 0:
        p.error(f"--budget {args.budget:g}: expected a positive number of seconds")
    if not args.dry_run and not torch.cuda.is_available():
        p.error(f"this torch ({torch.__version__}) sees no CUDA device; run on a GPU machine, or add --dry-run to "
                "exercise the check on CPU")
    return args


def device_info(device: torch.device) -> dict:
    info = {"device": str(device), "torch": torch.__version__, "cuda": torch.version.cuda,
            "python": platform.python_version(), "name": platform.processor() or platform.machine()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(name=props.name, capability=list(torch.cuda.get_device_capability(device)),
                    memory_gib=props.total_memory / 2**30, multiprocessors=props.multi_processor_count,
                    cudnn=torch.backends.cudnn.version())
    return info


def run_part(name: str, sizes: Sizes, device: torch.device, end: float, due: float | None = None) -> dict:
    """One part, guarded: its results, status and seconds, or its error. It stops by `due` (monotonic seconds) but
    gets at least half its allowance, and never runs past `end`."""
    t0 = time.monotonic()
    allowance = PART_BUDGETS[name]
    budget = Budget(max(allowance if due is None else due - t0, allowance / 2), end)
    entry: dict = {"budget_s": budget.end - t0}
    if budget.left() <= 0:
        return {**entry, "status": "over budget", "seconds": 0.0, "error": "no time left in the whole check's budget"}
    try:
        results = PART_FNS[name](sizes, device, budget)
        entry.update(status=part_status(results), results=dict(results))
    except Exception as e:  # recorded; the next part still runs
        entry.update(status="error", error=f"{type(e).__name__}: {e}",
                     traceback="".join(traceback.format_exception(e)[-6:]))
    free_memory()
    entry["seconds"] = time.monotonic() - t0
    return entry


def part_status(results: dict) -> str:
    """ok when every measurement is; else the worst of error > failed/mismatch > partial (some not run)."""
    statuses = {v["status"] for v in results.values() if isinstance(v, dict) and "status" in v}
    if statuses <= {"ok"}:
        return "ok"
    if "error" in statuses:
        return "error"
    if statuses & {"failed", "mismatch"}:
        return "failed"
    return "partial"


def cpu_notes(device: torch.device) -> list[str]:
    if device.type == "cuda":
        return []
    return ["dry run on CPU at tiny sizes: timings are not representative; peak GPU memory is not measured (null); "
            "the CUDA tests skip without a GPU; compile uses the eager backend"]


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    sizes, device = (DRY, torch.device("cpu")) if args.dry_run else (GPU, torch.device("cuda"))
    start = time.monotonic()
    end = start + args.budget
    report = {"check": SECTION, "dry_run": args.dry_run, "budget_s": args.budget, **device_info(device),
              "notes": cpu_notes(device), "parts": {}}
    due = start
    for name in args.parts:
        due += PART_BUDGETS[name]
        print(f"[gpu_check] {name} ...", flush=True)
        report["parts"][name] = entry = run_part(name, sizes, device, end, due)
        report["seconds"] = time.monotonic() - start
        write_json(report, args.out)  # after every part: what was measured survives a later crash or kill
        print(f"[gpu_check] {name}: {entry['status']} in {entry['seconds']:.1f} s", flush=True)
    report["seconds"] = time.monotonic() - start
    write_json(report, args.out)
    text = markdown(report)
    print(text)
    print(f"wrote {args.out}")
    if not (args.no_write or args.dry_run):
        print(f"wrote {write_section(SECTION, text, args.docs)}")
    return report


def write_json(report: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(report, indent=2, default=str) + "\n"))


# ---- the markdown section: every number read with `.get`, so a part that failed or was skipped shows "–" ----------

def markdown(report: dict) -> str:
    p = report.get("parts", {})
    dry = " — DRY RUN on CPU at tiny sizes, not representative" if report.get("dry_run") else ""
    head = (f"## GPU check (`scripts/gpu_check.py`)\n\n{report.get('name')}, torch {report.get('torch')}, CUDA "
            f"{report.get('cuda')}; whole check {report.get('seconds', 0):.0f} s of a "
            f"{report.get('budget_s', 0):.0f} s budget{dry}.")
    blocks = [head, _status_table(p)]
    for name, render in (("cuda_tests_and_parity", _tests), ("wan_1_3b", _wan_1_3b), ("vae_decode", _vae),
                         ("wan_14b_block", _block), ("memory_modes", _modes)):
        if name in p and p[name].get("results"):
            blocks.append(render(p[name]["results"]))
    return "\n\n".join(b for b in blocks if b)


def _status_table(p: dict) -> str:
    rows = ["| part | status | seconds (budget) | error |", "|---|---|---:|---|"]
    for name, e in p.items():
        errors = [e.get("error")] + [f"{k}: {v.get('status')}" for k, v in e.get("results", {}).items()
                                     if isinstance(v, dict) and v.get("status") not in (None, "ok")]
        text = "; ".join(x for x in errors if x).replace("|", "/").replace("\n", " ")
        rows.append(f"| {name} | {e.get('status')} | {e.get('seconds', 0):.0f} ({e.get('budget_s', 0):.0f}) | "
                    f"{text[:200]} |")
    return "\n".join(rows)


def _n(v, fmt: str = ".3g") -> str:
    return "–" if v is None else format(v, fmt)


def _ms(v) -> str:
    return "–" if v is None else f"{v * 1e3:.0f}"


def _tests(r: dict) -> str:
    t = r.get("cuda_tests", {})
    counts = ", ".join(f"{n} {k}" for k, n in t.get("counts", {}).items()) or t.get("status", "–")
    lines = [f"CUDA tests (`{t.get('command', 'pytest')}`): {counts}.", "",
             "| parity with diffusers, same weights | dtype | rel. diff | bound | status |", "|---|---|---:|---:|---|"]
    for key, v in r.items():
        if key.startswith(("dit_parity_", "vae_parity_")):
            what = "DiT forward (shapes case)" if key.startswith("dit") else "VAE encode/decode (tiny)"
            lines.append(f"| {what} | {key.rsplit('_', 1)[1]} | {_n(v.get('rel_diff'), '.1e')} | "
                         f"{_n(v.get('bound'), '.0e')} | {v.get('status')} |")
    return "\n".join(lines)


def _pair_rows(label: str, v: dict, flops: bool = False) -> list[str]:
    rows = []
    for impl in ("ours", "diffusers"):
        m = v.get(impl)
        if not m:
            continue
        rate = f"{_n(m.get('tflops'), '.0f')} ({_n(m.get('of_matmul'), '.0%')})" if flops and impl == "ours" else "–"
        rows.append(f"| {label} | {impl} | {_ms(m.get('seconds'))} | {_n(m.get('peak_mib'), '.0f')} | "
                    f"{_n(m.get('peak_growth_mib'), '.0f')} | {rate} | {_n(v.get('rel_diff'), '.1e')} |")
    return rows


def _wan_1_3b(r: dict) -> str:
    s, a, f, mm = r.get("setup", {}), r.get("attention_backend", {}), r.get("flops", {}), r.get("matmul", {})
    text = (f"DiT preset {s.get('preset')}, random weights, {s.get('dtype')}, latent {s.get('latent')} → "
            f"{s.get('tokens')} tokens, {s.get('text')}; attention backend {a.get('auto_picks')} "
            f"(available: {a.get('available')}). "
            f"FLOPs of one forward: {_n(f.get('per_forward'), '.3e')} by formula ({f.get('text_rows_computed')} text "
            f"rows), {_n(f.get('per_forward_all_text_rows'), '.3e')} with all text rows, "
            f"{_n(f.get('scaling_py'), '.3e')} by vidgen.parallel.scaling. Matmul {mm.get('n')}³ {mm.get('dtype')}: "
            f"{_n(mm.get('tflops'), '.0f')} TFLOP/s. {s.get('note', '')}")
    rows = ["| work | impl | ms | peak MiB | peak growth MiB | TFLOP/s (of matmul) | rel. diff |",
            "|---|---|---:|---:|---:|---:|---:|"]
    rows += _pair_rows("DiT forward", r.get("forward", {}), flops=True)
    rows += _pair_rows("guided Euler step (update)", r.get("guided_step", {}))
    return text.strip() + "\n\n" + "\n".join(rows)


def _vae(r: dict) -> str:
    s = r.get("setup", {})
    rows = [f"VAE decode, VAE preset {s.get('preset')}, random weights, {s.get('dtype')}, latent {s.get('latent')} → "
            f"pixels {s.get('pixels')}. {s.get('note', '')}".strip(), "",
            "| decode | status | ms | peak MiB | peak growth MiB |", "|---|---|---:|---:|---:|"]
    for key, label in (("ours_stream_decode", "ours, stream_decode per latent frame (frames dropped)"),
                       ("diffusers_decode", "diffusers AutoencoderKLWan, one-shot"),
                       ("diffusers_tiled_decode", "diffusers, enable_tiling()")):
        v = r.get(key, {})
        rows.append(f"| {label} | {v.get('status', '–')} | {_ms(v.get('seconds'))} | "
                    f"{_n(v.get('peak_mib'), '.0f')} | {_n(v.get('peak_growth_mib'), '.0f')} |")
    return "\n".join(rows)


def _block(r: dict) -> str:
    s, v = r.get("setup", {}), r.get("block_forward", {})
    return (f"One block of DiT preset {s.get('preset')}, {s.get('dtype')}, latent {s.get('latent')} → "
            f"{s.get('tokens')} tokens: {_ms(v.get('seconds'))} ms per block forward ({_n(v.get('tflops'), '.0f')} "
            f"TFLOP/s, peak {_n(v.get('peak_mib'), '.0f')} MiB); × {v.get('extrapolation', '–')} = "
            f"**{_n(v.get('extrapolated_s'), '.0f')} s**, beside {v.get('wan_published', 'Wan 2.1’s published figure')}"
            f": {_n(v.get('wan_published_s'), '.0f')} s. Status: {v.get('status', '–')}.")


def _modes(r: dict) -> str:
    s = r.get("setup", {})
    rows = [f"Memory modes, DiT preset {s.get('preset')}, {s.get('dtype')}, latent {s.get('latent')}: "
            f"{s.get('work')}; {s.get('peak')}.", "",
            "| mode | status | step ms | first call ms | resident MiB | peak MiB |", "|---|---|---:|---:|---:|---:|"]
    for mode in parts.MEMORY_MODES:
        v = r.get(mode, {})
        rows.append(f"| {mode} | {v.get('status', '–')} | {_ms(v.get('seconds'))} | {_ms(v.get('first_call_s'))} | "
                    f"{_n(v.get('resident_mib'), '.0f')} | {_n(v.get('peak_mib'), '.0f')} |")
    return "\n".join(rows)
