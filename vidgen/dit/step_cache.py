"""Step caching for the DiT (first-block cache): skip the deeper blocks at a denoising step whose first block barely
changed since the last fully computed step, and reuse what those blocks added then.

Consecutive denoising steps feed the DiT nearly the same input, so the residual the blocks add changes slowly. At each
step the first block always runs; its residual r₁ = block₁(x) − x is compared with r₁ from the last fully computed step:

    change = mean|r₁ − r₁_prev| / mean|r₁_prev|        (per batch item; the most-changed item decides)

Below the threshold, the output is block₁(x) + R_prev, where R_prev is what blocks 2..N added at that computed step;
otherwise blocks 2..N run and (r₁, R) are stored. Comparing with the last *computed* step, not the last step, bounds
the drift of a run of skips. One `StepCache` holds one trajectory of one model branch: the pipeline makes one per
guidance branch (or one for both when they are batched: rows stay per item, only the decision is shared).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class StepCacheConfig:
    """threshold: relative change of the first block's residual below which a step reuses the cached residual
    (0 never reuses: output identical to no cache). warmup_steps: forwards at the start that always run fully."""

    threshold: float
    warmup_steps: int = 1

    def __post_init__(self):
        if not self.threshold >= 0:
            raise ValueError(f"step cache threshold must be >= 0, got {self.threshold}")
        if self.warmup_steps < 1:
            raise ValueError(f"step cache warmup_steps must be >= 1 (the first step has nothing to reuse), got "
                             f"{self.warmup_steps}")


class StepCache:
    """The state of one sampling trajectory of one model branch, passed to every `DiT.forward(..., step_cache=)`.

    computed / skipped count the forwards that ran all blocks / reused the cached residual."""

    def __init__(self, config: StepCacheConfig):
        self.config = config
        self.first_residual: torch.Tensor | None = None  # (B, S, D): r₁ at the last fully computed step
        self.rest_residual: torch.Tensor | None = None  # (B, S, D): what blocks 2..N added at that step
        self.computed = 0
        self.skipped = 0

    @property
    def skipped_fraction(self) -> float:
        total = self.computed + self.skipped
        return self.skipped / total if total else 0.0

    def relative_change(self, first_residual: torch.Tensor) -> torch.Tensor:
        """Per item change of r₁ `(B, S, D)` against the stored one -> `(B,)` fp32."""
        prev = self.first_residual
        diff = (first_residual.float() - prev.float()).abs().flatten(1).mean(1)
        return diff / prev.float().abs().flatten(1).mean(1).clamp_min(torch.finfo(torch.float32).tiny)

    def reuse(self, first_residual: torch.Tensor) -> bool:
        """Whether this step may skip blocks 2..N, given its first block's residual `(B, S, D)`."""
        if self.first_residual is None:
            return False
        if self.first_residual.shape != first_residual.shape:
            raise ValueError(
                f"this StepCache holds a trajectory of tokens {tuple(self.first_residual.shape)} but got "
                f"{tuple(first_residual.shape)}; use one StepCache per sampling run and guidance branch")
        if self.computed < self.config.warmup_steps or self.config.threshold == 0:
            return False
        return bool(self.relative_change(first_residual).max() < self.config.threshold)

    def lookup(self, first_residual: torch.Tensor) -> torch.Tensor | None:
        """What blocks 2..N added at the last computed step when this step may reuse it (counted as skipped);
        None when the blocks must run (then `store` their result)."""
        if not self.reuse(first_residual):
            return None
        self.skipped += 1
        return self.rest_residual

    def store(self, first_residual: torch.Tensor, rest_residual: torch.Tensor) -> None:
        """The residuals of a fully computed step (counted as computed)."""
        self.first_residual, self.rest_residual = first_residual, rest_residual
        self.computed += 1


def as_step_cache(value: StepCacheConfig | float | None) -> StepCacheConfig | None:
    """A `StepCacheConfig` from a config, a bare threshold, or None (off)."""
    if value is None or isinstance(value, StepCacheConfig):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return StepCacheConfig(threshold=float(value))
    raise TypeError(f"step_cache must be a StepCacheConfig, a threshold (float) or None, got {value!r}")
