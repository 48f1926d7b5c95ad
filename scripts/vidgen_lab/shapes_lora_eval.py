"""Evaluation of a colour taught to a shapes-world model with a LoRA: the judge (with the world's extra colours in its
palette, `world.PALETTE`) on clips of the new colour's captions, and on the world's own captions with and without the
adapter on the same prompts and noise, so what the adapter costs the base behaviour is read directly.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np

from vidgen_lab.shapes_eval import EVAL_SEED, eval_captions, generate_batches
from vidgen.shapes.judge import judge_clip, score
from vidgen.shapes.world import PALETTE, all_captions


@dataclass(frozen=True)
class LoRAEvalConfig:
    colour: str = "orange"
    new_clips: int = 144  # 4 per caption of the new colour (36 of them)
    seen_clips: int = 195  # every caption of the train split once
    heldout_clips: int = 42  # 2 per held-out caption
    batch_size: int = 8
    seed: int = EVAL_SEED

    def __post_init__(self):
        if self.colour not in PALETTE:
            raise ValueError(f"colour must be one of {list(PALETTE)}, got {self.colour!r}")
        for name in ("new_clips", "seen_clips", "heldout_clips", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"LoRAEvalConfig.{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class LoRAEvalResult:
    new: dict = field(default_factory=dict)  # judge scores of the new colour's clips, adapter on
    base: dict = field(default_factory=dict)  # split → scores of the world's captions, adapter off
    adapted: dict = field(default_factory=dict)  # split → the same prompts and noise, adapter on
    seconds: float = 0.0


def _judged(pipe, prompts: list[str], seed: int, batch_size: int) -> dict:
    clips = generate_batches(pipe, prompts, seed, batch_size)
    return score([judge_clip(c, palette=PALETTE) for c in clips], prompts)


def lora_file(path):
    """The `adapt` of `evaluate_lora` for a LoRA file: loaded as the pipeline loads it (`vidgen.lora.adapters`)."""
    from vidgen.lora.adapters import LoraAdapters

    def adapt(dit):
        LoraAdapters(dit).load(path)
        return dit

    return adapt


def evaluate_lora(pipe, adapt, cfg: LoRAEvalConfig = LoRAEvalConfig()) -> LoRAEvalResult:
    """`adapt(dit)` puts the adapter on a copy of `pipe.dit` and returns it (e.g. `lora_file(path)`)."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    splits = {"train": eval_captions(cfg.seen_clips, "train", rng),
              "heldout": eval_captions(cfg.heldout_clips, "heldout", rng)}
    pool = all_captions("all", colours=(cfg.colour,))
    order = rng.permutation(len(pool))
    new = [pool[order[i % len(pool)]] for i in range(cfg.new_clips)]
    result = LoRAEvalResult()
    result.base = {s: _judged(pipe, p, cfg.seed, cfg.batch_size) for s, p in splits.items()}
    base_dit = pipe.dit
    pipe.dit = adapt(copy.deepcopy(base_dit))
    try:
        result.adapted = {s: _judged(pipe, p, cfg.seed, cfg.batch_size) for s, p in splits.items()}
        result.new = _judged(pipe, new, cfg.seed + 1, cfg.batch_size)
    finally:
        pipe.dit = base_dit
    result.seconds = time.perf_counter() - t0
    return result


def to_markdown(r: LoRAEvalResult, cfg: LoRAEvalConfig) -> str:
    keys = ("colour", "shape", "direction", "all")
    n = int(r.new["n"])
    lines = [f"| captions | clips | adapter | {' | '.join(keys)} |", "|---|---|---|" + "---|" * len(keys),
             f"| {cfg.colour} (new) | {n} | on | " + " | ".join(f"{100 * r.new[k]:.1f}%" for k in keys) + " |"]
    for split in r.base:
        for name, scores in (("off", r.base[split]), ("on", r.adapted[split])):
            lines.append(f"| world's own, {split} | {int(scores['n'])} | {name} | "
                         + " | ".join(f"{100 * scores[k]:.1f}%" for k in keys) + " |")
    return "\n".join(lines)
