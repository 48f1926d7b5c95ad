"""Memory modes for consumer GPUs, chosen when a pipeline is loaded; all off by default.

- offload="model": each component (text encoder → DiT → VAE) is on the GPU only while it works (`vidgen.offload`).
- offload="blocks": the DiT's blocks stay in pinned CPU memory and come to the GPU `resident_blocks` at a time, the
  next one copied on a side stream while the current one computes: what lets a 14B DiT run on a 24 GB card.
- fp8=True: the DiT blocks' linear weights stored as float8 e4m3 with per-output-channel scales and computed in the
  DiT's dtype (`vidgen.dit.fp8`): half the weight memory, outputs within ~1% of bf16.
- compile=True: each repeated DiT block compiled with torch.compile (`vidgen.dit.compile`): one graph serves them all.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

OFFLOADS = ("model", "blocks")


@dataclass(frozen=True)
class MemoryOptions:
    offload: str | None = None  # None, "model" or "blocks"
    resident_blocks: int = 2  # with offload="blocks": DiT blocks on the GPU at a time (the current and the next)
    fp8: bool = False
    compile: bool = False
    compile_backend: str = "inductor"

    def __post_init__(self):
        if self.offload is not None and self.offload not in OFFLOADS:
            raise ValueError(f"offload must be None or one of {OFFLOADS}, got {self.offload!r}")
        if isinstance(self.resident_blocks, bool) or not isinstance(self.resident_blocks, int) or \
                self.resident_blocks < 1:
            raise ValueError(f"resident_blocks must be a whole number >= 1, got {self.resident_blocks!r}")

    @property
    def load_device_is_cpu(self) -> bool:
        """Offloaded components are loaded onto the CPU and moved to the GPU by the offload hooks."""
        return self.offload is not None


def prepare_dit(dit: torch.nn.Module, options: MemoryOptions, compute_dtype: torch.dtype) -> torch.nn.Module:
    """fp8 weights and compiled blocks, in that order (quantize before compiling, so the graph holds the fp8 layers)."""
    if options.fp8:
        from vidgen.dit.fp8 import quantize_fp8

        quantize_fp8(dit, compute_dtype=compute_dtype)
    if options.compile:
        from vidgen.dit.compile import compile_blocks

        compile_blocks(dit, backend=options.compile_backend)
    return dit


def enable_offload(options: MemoryOptions, text_model: torch.nn.Module, dit: torch.nn.Module,
                   vae: torch.nn.Module, device: torch.device, *, dit_2: torch.nn.Module | None = None,
                   image_model: torch.nn.Module | None = None):
    """The offload object of the chosen mode (None without offload); the components must be on the CPU. A second
    expert (`dit_2`) is offloaded as the first; an image encoder as the text encoder."""
    small = [m for m in (text_model, image_model) if m is not None]
    dits = [m for m in (dit, dit_2) if m is not None]
    if options.offload == "model":
        from vidgen.offload import enable_model_offload

        return enable_model_offload([*small, *dits, vae], device)
    if options.offload == "blocks":
        from vidgen.offload import Offloads, enable_block_offload

        for module in (*small, vae):
            module.to(device)
        parts = [enable_block_offload(m, device, options.resident_blocks) for m in dits]
        return parts[0] if len(parts) == 1 else Offloads(parts)
    return None
