"""torch.compile for the DiT, one transformer block at a time.

Why blocks and not the whole model: the N blocks are one module class run with the same shapes, so torch.compile
traces and compiles a single graph and every block reuses it (each block's weights are graph inputs). Compile time is
that of one block, independent of depth, and the code that changes per call (patchify, text compaction, sequence
sharding, the step cache's skip decision) stays eager instead of breaking the graph. `block.compile()` keeps the
modules where they are, so state-dict keys are unchanged (wrapping in `torch.compile(block)` would add `_orig_mod.`).
"""

from __future__ import annotations

import inspect
from typing import Callable

import torch
import torch.nn as nn

# fullgraph: a graph break inside a block is a bug to hear about, not a silent slowdown (tests/test_dit_fast_paths.py
# pins the block as break-free). dynamic=False: sampling runs one shape for every step, so specialised kernels win;
# another resolution or a scalar/per-frame timestep switch compiles one more graph, shared again by all blocks.
DEFAULTS = {"fullgraph": True, "dynamic": False}


def compile_blocks(dit: nn.Module, backend: str | Callable = "inductor", **options) -> nn.Module:
    """Compile each of `dit.blocks` in place with `torch.compile(backend=backend, **options)`; returns `dit`.

    `options` are torch.compile's keyword arguments (`mode`, `options`, `fullgraph`, `dynamic`, ...), over
    `DEFAULTS`; `backend` is a registered name or a backend callable. Compilation happens lazily, on the first
    forward. Calling this again replaces the wrappers (same settings reuse the graphs already compiled). "aot_eager"
    traces without generating code, to check that a block compiles; "inductor" generates kernels (on a CPU it needs
    a C++ compiler).
    """
    known = [name for name in torch._dynamo.list_backends(exclude_tags=()) if "TESTING" not in name]
    if not (callable(backend) or backend in known):  # all registered names, "aot_eager" and "eager" included
        raise ValueError(f"compile_blocks: unknown torch.compile backend {backend!r}; expected a callable or one of "
                         f"{known}")
    accepted = set(inspect.signature(torch.compile).parameters) - {"model", "backend"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ValueError(
            f"compile_blocks: unknown torch.compile option(s) {unknown}; expected some of {sorted(accepted)}"
        )
    blocks = getattr(dit, "blocks", None)
    if not isinstance(blocks, nn.ModuleList) or len(blocks) == 0:
        found = "no `blocks`" if blocks is None else f"`blocks` of type {type(blocks).__name__}"
        if isinstance(blocks, nn.ModuleList):
            found = "an empty `blocks`"
        raise ValueError(f"compile_blocks needs a DiT whose `blocks` is a non-empty nn.ModuleList; "
                         f"{type(dit).__name__} has {found}")
    for block in blocks:
        block.compile(backend=backend, **{**DEFAULTS, **options})
    return dit
