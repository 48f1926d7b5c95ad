"""Learning rate as a pure function of the optimizer step: linear warmup, then constant or cosine decay."""

from __future__ import annotations

import math


def lr_factor(step: int, *, warmup_steps: int, max_steps: int, schedule: str, min_ratio: float = 0.0) -> float:
    """Multiplier of the base LR for optimizer step `step` (0-based): warmup ramps 1/w, 2/w, ..., 1."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        span = max(1, max_steps - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / span)
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown LR schedule {schedule!r}; expected 'constant' or 'cosine'")
