"""Precomputed training data: VAE latents and text embeddings in safetensors shards, read back as a dataset.

Layout of a cache folder: `index.json` (text_len, the empty-caption embedding's file, latent buckets, one record per
sample: shard, caption, bucket) and `shard-NNNNN.safetensors` holding `latent.<i>` (C, F, h, w) and `context.<i>`
(n_i, D) — only the real tokens; they are zero-padded back to text_len when read (Wan's convention).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open

from vidgen.data.buckets import Bucket, SampleKey

INDEX = "index.json"
NULL = "null_context.safetensors"


class LatentCache(torch.utils.data.Dataset):
    """`cache[SampleKey]` → {"latent": (C, F, h, w), "context": (text_len, D), "null_context": (text_len, D),
    "caption": str}. Buckets are in latent units (F, h, w)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        if not (self.folder / INDEX).is_file():
            raise FileNotFoundError(f"{self.folder} is not a latent cache (no {INDEX}); build one with "
                                    "`python scripts/precompute.py --config ...`")
        index = json.loads((self.folder / INDEX).read_text())
        self.text_len = index["text_len"]
        self.records = index["samples"]
        if not self.records:
            raise ValueError(f"latent cache {self.folder} holds no samples")
        self.buckets = [Bucket(*b) for b in index["buckets"]]
        self.entries = [(i, r["bucket"]) for i, r in enumerate(self.records)]
        with safe_open(str(self.folder / NULL), "pt") as f:
            self.null = self._pad(f.get_tensor("context"))

    def _pad(self, ctx: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(self.text_len, ctx.shape[-1], dtype=torch.float32)
        out[: ctx.shape[0]] = ctx[: self.text_len].float()
        return out

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: SampleKey) -> dict:
        r = self.records[key.item]
        with safe_open(str(self.folder / r["shard"]), "pt") as f:
            latent = f.get_tensor(f"latent.{key.item}").float()
            context = self._pad(f.get_tensor(f"context.{key.item}"))
        return {"latent": latent, "context": context, "null_context": self.null, "caption": r["caption"]}


def collate_latents(samples: list[dict]) -> dict:
    return {
        "latent": torch.stack([s["latent"] for s in samples]),  # (B, C, F, h, w)
        "context": torch.stack([s["context"] for s in samples]),  # (B, L, D)
        "null_context": torch.stack([s["null_context"] for s in samples]),
        "caption": [s["caption"] for s in samples],
        "bad_files": [],
    }
