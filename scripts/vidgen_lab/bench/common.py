"""What every benchmark shares: the device, synchronised timing, peak memory of one call, and the result table."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch

from vidgen_lab.benchmarking import peak_rss_since_reset, reset_peak_rss, time_alternating

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
TARGET_SECONDS = 1.0
MAX_ROUNDS = 15


def check_device(name: str) -> torch.device:
    """The benchmark device; a clear error when CUDA is asked for and absent."""
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: this torch ({torch.__version__}) sees no CUDA device; run on a GPU "
                         "machine with a CUDA build of torch, or use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise SystemExit(f"--device {name}: expected cpu or cuda[:N]")
    return device


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synced(fn: Callable[[], Any], device: torch.device) -> Callable[[], Any]:
    """`fn` followed by a device synchronisation, so a timer sees the GPU's work, not its queueing."""
    def run():
        out = fn()
        synchronize(device)
        return out
    return run


def time_pair(fns: dict[str, Callable[[], Any]], device: torch.device, repeats: int,
              warmup: int = 1) -> dict[str, float]:
    """Fastest seconds per callable over alternating rounds (see `time_alternating`), synchronising a GPU after each.

    At least `repeats` rounds; short calls get more (up to MAX_ROUNDS, about TARGET_SECONDS per callable), so a
    20 ms forward is not judged on three samples that a busy neighbour can all hit."""
    fns = {k: synced(f, device) for k, f in fns.items()}
    with torch.no_grad():
        probe = time_alternating(fns, repeats=1, warmup=warmup)
        rounds = max(repeats, min(MAX_ROUNDS, math.ceil(TARGET_SECONDS / max(probe.values()))))
        return time_alternating(fns, repeats=rounds, warmup=0, statistic="min")


def peak_of(fn: Callable[[], Any], device: torch.device) -> float:
    """Peak memory growth of one `fn()` in MiB: device memory on CUDA, resident memory on CPU. Call it in a fresh
    process (`run_isolated`): the CPU figure is the process's peak RSS since just before the call."""
    if device.type == "cuda":
        synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        with torch.no_grad():
            fn()
        synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    before = reset_peak_rss()
    with torch.no_grad():
        fn()
    return max(0.0, peak_rss_since_reset() - before)


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖ / ‖b‖ in fp32."""
    a, b = a.float(), b.float()
    return ((a - b).norm() / b.norm()).item()


@dataclass
class Row:
    """One line of the comparison: seconds and peak MiB of ours and the reference on the same work."""

    work: str
    dtype: str
    ours_s: float
    ref_s: float
    diff: float  # relative difference of the outputs
    ours_mib: float | None = None
    ref_mib: float | None = None
    flops: float | None = None  # of one call (matmuls and attention)
    matmul_flops_per_s: float | None = None  # a matmul of comparable size, same dtype and device

    def markdown(self) -> str:
        mem = ratio = "–"
        if self.ours_mib is not None and self.ref_mib is not None:
            mem = f"{self.ours_mib:.0f} / {self.ref_mib:.0f}"
            ratio = f"**{self.ours_mib / self.ref_mib:.2f}**" if self.ref_mib > 0 else "–"
        achieved = ceiling = share = "–"
        if self.flops is not None:
            rate = self.flops / self.ours_s
            achieved = f"{rate / 1e9:.1f}"
            if self.matmul_flops_per_s:
                ceiling, share = f"{self.matmul_flops_per_s / 1e9:.1f}", f"{rate / self.matmul_flops_per_s:.0%}"
        return (f"| {self.work} | {self.dtype} | {_ms(self.ours_s)} | {_ms(self.ref_s)} | "
                f"**{self.ours_s / self.ref_s:.2f}** | {mem} | {ratio} | {achieved} | {ceiling} | {share} | "
                f"{self.diff:.1e} |")


TABLE_HEAD = (
    "| work | dtype | ours ms | diffusers ms | time ratio (ours/diffusers) | peak MiB ours / diffusers | "
    "memory ratio | ours GFLOP/s | matmul GFLOP/s | of matmul | rel. diff vs diffusers |\n"
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.0f}" if ms >= 10 or math.isclose(ms, round(ms)) else f"{ms:.1f}"
