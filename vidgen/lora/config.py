"""LoRAConfig: the adapters `vidgen train` puts on a frozen DiT (its YAML `lora:` section), and the default targets."""

from __future__ import annotations

from dataclasses import dataclass

# The linear layers of a block, in our names inside `blocks.{i}.`: what the published Wan LoRAs adapt, and what an
# adapter goes on by default (every attention and feed-forward projection).
BLOCK_LINEARS: tuple[str, ...] = ("self_attn.qkv", "self_attn.out", "cross_attn.q", "cross_attn.kv",
                                  "cross_attn.out", "ffn.fc1", "ffn.fc2")


@dataclass(frozen=True)
class LoRAConfig:
    """Low-rank adapters on a frozen DiT (vidgen.lora.train): W x + (alpha / rank) · B A x on each target linear."""

    rank: int = 16
    alpha: float = 16.0
    # Module names relative to a block (a linear of `vidgen.dit.model.DiTBlock`), matched in every block.
    target_modules: tuple[str, ...] = BLOCK_LINEARS
    dropout: float = 0.0
