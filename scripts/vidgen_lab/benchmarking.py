"""Small tools shared by the benchmark scripts: timing, peak memory in a fresh process, and benchmarks.md sections.

Benchmarks compare implementations side by side in one run and report ratios; absolute numbers on a shared machine are
noise, ratios taken alternately in the same run are not.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import platform
import resource
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch

from vidgen.files import write_atomic

# Where reports go: docs/benchmarks.md under the directory the command is run from (the repository root, as a rule),
# or under the folder given as --docs.
DOCS = Path("docs")
REPORT = "benchmarks.md"


def add_docs_arg(parser) -> None:
    """The --docs option of every script that writes a section."""
    parser.add_argument("--docs", type=Path, default=DOCS, metavar="DIR",
                        help=f"folder whose {REPORT} gets this script's section (default: {DOCS}/ in the current "
                             "directory)")


def parse_parts(parser, only: str, known) -> tuple[str, ...]:
    """`--only a,b`'s parts, in order; the parser's one-line error for an unknown or empty selection."""
    parts = tuple(x.strip() for x in only.split(",") if x.strip())
    unknown = sorted(set(parts) - set(known))
    if unknown or not parts:
        parser.error(f"--only {only!r}: unknown part(s) {unknown}; choose from {tuple(known)}")
    return parts


def rss_mib() -> float:
    """Current resident set size of this process, MiB (Linux /proc)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _status_mib(key: str) -> float:
    """A memory line of /proc/self/status (VmRSS, VmHWM, ...), MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(key)


def reset_peak_rss() -> float:
    """Reset the kernel's peak-RSS mark (VmHWM) so earlier transients (loading) are not counted; current RSS, MiB."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_mib("VmRSS")


def peak_rss_since_reset() -> float:
    """Peak RSS since the last `reset_peak_rss`, MiB."""
    return _status_mib("VmHWM")


def _child(queue, fn, args, kwargs, threads):
    torch.set_num_threads(threads)
    try:
        before = rss_mib()
        t0 = time.perf_counter()
        result = fn(*args, **kwargs)
        seconds = time.perf_counter() - t0
        queue.put(("ok", result, seconds, peak_rss_mib() - before))
    except BaseException as e:  # report the child's failure in the parent
        queue.put(("error", repr(e), 0.0, 0.0))


def run_isolated(fn: Callable[..., Any], *args, threads: int | None = None, **kwargs) -> tuple[Any, float, float]:
    """Run `fn(*args, **kwargs)` in a fresh spawned process.

    Returns (result, seconds, peak_rss_increase_mib) where the memory figure is the process's peak RSS minus its RSS
    just before the call, so imports and set-up are not counted. `fn` must be a picklable top-level function and its
    result small and picklable.
    """
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, fn, args, kwargs, threads or torch.get_num_threads()))
    proc.start()
    status, result, seconds, mem = queue.get()
    proc.join()
    if status != "ok":
        raise RuntimeError(f"benchmark child failed: {result}")
    return result, seconds, mem


def time_alternating(fns: dict[str, Callable[[], Any]], repeats: int = 3, warmup: int = 1,
                     statistic: str = "median") -> dict[str, float]:
    """Median (or "min") seconds per callable, calling them in alternation so machine noise hits all of them alike.

    On a machine shared with other jobs, "min" is the steadier estimate of a call's own cost: others only add time."""
    if statistic not in ("median", "min"):
        raise ValueError(f"statistic must be 'median' or 'min', got {statistic!r}")
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    reduce = statistics.median if statistic == "median" else min
    return {name: reduce(ts) for name, ts in times.items()}


def machine_info() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def write_section(name: str, markdown: str, docs: Path | str = DOCS) -> Path:
    """Replace (or append) the section `name` of `docs`/benchmarks.md, delimited by HTML comment markers.

    Each benchmark script owns one section, so scripts can be re-run independently. The file is written atomically.
    """
    path = Path(docs) / REPORT
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{markdown.strip()}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n\nEach section is written by the script it names.\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, lambda tmp: tmp.write_text(text))
