"""What the GPU check's parts share: a time budget, guarded measurements, synchronised timing, peak GPU memory of one
call, and the matmul ceiling.

A part runs its measurements one by one through `Results.run`, so one that fails or would overrun the part's budget is
recorded (its error, or "over budget") and the rest still run. Peak memory is `torch.cuda.max_memory_allocated` over one
call after a reset (absolute, weights included, and its growth over what was allocated before); on CPU it is None.
"""

from __future__ import annotations

import gc
import math
import time
from typing import Any, Callable

import torch

from vidgen_lab.bench.common import synced, synchronize
from vidgen_lab.benchmarking import time_alternating


class OverBudget(Exception):
    pass


class Budget:
    """Seconds left to a part: its own allowance, never past the whole check's end."""

    def __init__(self, seconds: float, end: float = math.inf):
        self.end = min(time.monotonic() + seconds, end)

    def left(self) -> float:
        return self.end - time.monotonic()

    def check(self, what: str, needs: float = 0.0) -> None:
        """Raise OverBudget unless about `needs` seconds are left for `what`."""
        if self.left() < needs:
            raise OverBudget(f"{what}: not run, {max(0.0, self.left()):.0f} s of the budget left, needs ~{needs:.0f} s")


class Results(dict):
    """A part's results; `run(name, fn)` stores fn()'s dict, or why it has none."""

    def __init__(self, budget: Budget):
        super().__init__()
        self.budget = budget

    def run(self, name: str, fn: Callable[[], dict], needs: float = 0.0) -> dict:
        try:
            self.budget.check(name, needs)
            self[name] = {"status": "ok", **fn()}
        except OverBudget as e:
            self[name] = {"status": "over budget", "error": str(e)}
        except ImportError as e:
            self[name] = {"status": "not available", "error": f"{type(e).__name__}: {e}"}
        except Exception as e:  # recorded; the part goes on with its next measurement
            self[name] = {"status": "error", "error": f"{type(e).__name__}: {e}"}
        free_memory()
        return self[name]


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def diffusers_missing() -> str | None:
    """Why diffusers cannot be used here, or None."""
    try:
        import diffusers  # noqa: F401
    except ImportError as e:
        return f"diffusers is not importable ({e}); install its wheel first (docs/gpu_check.md)"
    return None


# ---- timing and memory -------------------------------------------------------------------------------------------

def time_fns(fns: dict[str, Callable[[], Any]], device: torch.device, repeats: int, warmup: int = 1) -> dict:
    """Fastest seconds per callable over `repeats` alternating rounds after `warmup`, the device synchronised."""
    with torch.no_grad():
        return time_alternating({k: synced(f, device) for k, f in fns.items()}, repeats=repeats, warmup=warmup,
                                statistic="min")


def one_call(fn: Callable[[], Any], device: torch.device) -> dict:
    """Seconds of one call and, on CUDA, its peak allocated memory (MiB): absolute and growth over the start."""
    synchronize(device)
    before = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    with torch.no_grad():
        fn()
    synchronize(device)
    out = {"seconds": time.perf_counter() - t0, "peak_mib": None, "peak_growth_mib": None}
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
        out.update(peak_mib=peak / 2**20, peak_growth_mib=(peak - before) / 2**20)
    return out


def matmul_tflops(n: int, dtype: torch.dtype, device: torch.device, repeats: int = 10) -> dict:
    """TFLOP/s of an n×n @ n×n product: the practical ceiling of this device for large matmuls."""
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    seconds = time_fns({"mm": lambda: a @ b}, device, repeats, warmup=2)["mm"]
    return {"n": n, "dtype": str(dtype).removeprefix("torch."), "seconds": seconds, "tflops": 2 * n**3 / seconds / 1e12}
