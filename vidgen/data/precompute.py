"""Encode a media dataset once — VAE latents and text embeddings — into a `LatentCache` folder.

Each (item, bucket) entry becomes one sample, centre-cropped, with the clip drawn at `draw = entry number` (so the
cache is reproducible). Trailing zero rows of the text context are not stored. The folder appears complete or not at all.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from safetensors.torch import save_file

from vidgen.data.buckets import SampleKey
from vidgen.data.latent_cache import INDEX, NULL
from vidgen.files import atomic_folder

log = logging.getLogger(__name__)


@torch.no_grad()
def precompute(dataset, vae, text, text_len: int, folder: str | Path, *, batch_size: int = 8,
               shard_size: int = 256, overwrite: bool = False) -> Path:
    """Write the cache of `dataset` (a MediaDataset or ShapesSource: `entries` and `dataset[SampleKey]`) to `folder`
    with `vae.encode` and `text(captions) → (B, text_len, D)`."""
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise FileExistsError(f"{folder} exists; pass overwrite=True or choose another folder")
    with atomic_folder(folder) as tmp:
        save_file({"context": _real_tokens(text([""])[0])}, str(tmp / NULL))
        entries = dataset.entries
        by_bucket: dict[int, list[int]] = {}
        for n, (_, b) in enumerate(entries):
            by_bucket.setdefault(b, []).append(n)
        latent_buckets: dict[tuple, int] = {}
        records: list[dict | None] = [None] * len(entries)
        shard: dict[str, torch.Tensor] = {}
        shard_no = 0

        def flush():
            nonlocal shard, shard_no
            if shard:
                save_file(shard, str(tmp / f"shard-{shard_no:05d}.safetensors"))
                shard, shard_no = {}, shard_no + 1

        for b, ns in sorted(by_bucket.items()):
            for k in range(0, len(ns), batch_size):
                chunk = ns[k:k + batch_size]
                samples = [dataset[SampleKey(entries[n][0], b, n)] for n in chunk]
                latents = vae.encode(torch.stack([s["video"] for s in samples])).float().cpu()  # (B, C, F, h, w)
                contexts = text([s["caption"] for s in samples]).float().cpu()  # (B, L, D)
                shape = tuple(latents.shape[2:])
                lb = latent_buckets.setdefault(shape, len(latent_buckets))
                for n, s, z, c in zip(chunk, samples, latents, contexts):
                    shard[f"latent.{n}"] = z.contiguous()
                    shard[f"context.{n}"] = _real_tokens(c)
                    records[n] = {"shard": f"shard-{shard_no:05d}.safetensors", "caption": s["caption"], "bucket": lb}
                if len(shard) >= 2 * shard_size:
                    flush()
        flush()
        index = {"text_len": text_len, "buckets": [list(s) for s in sorted(latent_buckets, key=latent_buckets.get)],
                 "samples": records}
        (tmp / INDEX).write_text(json.dumps(index))
    log.info("cached %d samples in %s", len(entries), folder)
    return folder


def _real_tokens(ctx: torch.Tensor) -> torch.Tensor:
    """(L, D) → (n, D) without the trailing all-zero rows (at least one row kept)."""
    nonzero = (ctx != 0).any(dim=-1).nonzero()
    n = int(nonzero.max()) + 1 if len(nonzero) else 1
    return ctx[:n].contiguous()
