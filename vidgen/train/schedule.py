"""Learning rate as a pure function of the optimizer step: linear warmup, then constant, cosine, or warmup-stable-decay.

"wsd" holds the LR constant and decays it linearly over the last `decay_steps` steps, so a constant-LR run can be
extended and annealed at the end without changing any step it has already taken.
"""

from __future__ import annotations

import math


SCHEDULES = ("constant", "cosine", "wsd")


def lr_factor(step: int, *, warmup_steps: int, max_steps: int, schedule: str, min_ratio: float = 0.0,
              decay_steps: int = 0) -> float:
    """Multiplier of the base LR for optimizer step `step` (0-based): warmup ramps 1/w, 2/w, ..., 1.

    cosine decays to min_ratio at max_steps; wsd is constant until max_steps - decay_steps, then linear to min_ratio.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        span = max(1, max_steps - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / span)
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "wsd":
        if decay_steps < 1:
            raise ValueError(f"schedule 'wsd' needs decay_steps >= 1, got {decay_steps}")
        progress = min(1.0, max(0.0, (step + 1 - (max_steps - decay_steps)) / decay_steps))  # last step: min_ratio
        return 1.0 - (1.0 - min_ratio) * progress
    raise ValueError(f"unknown LR schedule {schedule!r}; expected one of {SCHEDULES}")
