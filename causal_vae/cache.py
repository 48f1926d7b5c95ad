"""The temporal cache: what a causal network must remember about frames it has already seen.

Every layer that looks back in time owns one slot, numbered when the model is built. A slot holds `None` until the
layer has seen its first frame, then the few trailing frames of its input it needs (2 for a 3-tap causal conv,
1 for a temporal downsample). The cache is immutable: a step takes one and returns a new one, so a stream can be
resumed or branched from any earlier cache.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TemporalCache:
    states: tuple[torch.Tensor | None, ...]
    frames_in: int = 0  # input frames consumed so far by the network that owns this cache

    @classmethod
    def empty(cls, num_slots: int) -> "TemporalCache":
        return cls(states=(None,) * num_slots)

    @property
    def started(self) -> bool:
        return self.frames_in > 0

    def nbytes(self) -> int:
        return sum(s.numel() * s.element_size() for s in self.states if s is not None)


def assign_slots(module: torch.nn.Module) -> int:
    """Give every temporally stateful submodule (those with a `slot` attribute) a fixed slot index; return the count."""
    n = 0
    for m in module.modules():
        if hasattr(m, "slot"):
            m.slot = n
            n += 1
    return n
