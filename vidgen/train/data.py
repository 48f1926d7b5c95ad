"""The trainer's data: media (folder/manifest), a latent cache or a source rendered on the fly (`DATA_SOURCES`) →
dataset + bucket batch sampler → loader."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from vidgen.data.buckets import Bucket, BucketBatchSampler, validate_buckets

from vidgen.data.sources import DATA_SOURCES

if TYPE_CHECKING:
    from vidgen.train.config import TrainConfig




@dataclass
class TrainData:
    dataset: torch.utils.data.Dataset
    sampler: BucketBatchSampler
    buckets: list[Bucket]
    collate: object
    skipped: dict[str, str]  # path -> reason, found while indexing
    unreadable: list[str]  # skipped paths that could not be read


def build_data(config: TrainConfig, factors: tuple[int, int], rank: int = 0, world_size: int = 1) -> TrainData:
    """Index the data and check it fits the model before any training step; errors say what to fix."""
    d = config.data
    if d.cache is not None:
        from vidgen.data.latent_cache import LatentCache, collate_latents

        cache = LatentCache(d.cache)
        sampler = BucketBatchSampler(cache.entries, cache.buckets, d.batch_size, image_ratio=d.image_ratio,
                                     seed=config.seed, rank=rank, world_size=world_size)
        return TrainData(cache, sampler, cache.buckets, collate_latents, {}, [])
    from vidgen.data.dataset import MediaDataset, build_index, collate

    buckets = validate_buckets(d.buckets, *factors)
    if d.shapes is not None:
        world = DATA_SOURCES["shapes"].build(d.shapes, buckets, seed=config.seed, split=d.shapes_split,
                                             image_ratio=d.image_ratio, partial_captions=d.partial_captions,
                                             extra_colours=d.shapes_extra_colours,
                                             extra_fraction=d.shapes_extra_fraction)
        sampler = BucketBatchSampler(world.entries, world.buckets, d.batch_size, image_ratio=d.image_ratio,
                                     seed=config.seed, rank=rank, world_size=world_size)
        return TrainData(world, sampler, world.buckets, collate, {}, [])
    from vidgen.data.sources import read_manifest, scan_folder

    items = scan_folder(d.folder) if d.folder is not None else read_manifest(d.manifest)
    index = build_index(items, buckets, fps=d.fps, images_from_videos=d.images_from_videos,
                        where=f"data.{'folder' if d.folder is not None else 'manifest'} {d.folder or d.manifest}")
    dataset = MediaDataset(index, buckets, fps=d.fps, random_crop=d.random_crop, seed=config.seed)
    sampler = BucketBatchSampler(index.entries, buckets, d.batch_size, image_ratio=d.image_ratio, seed=config.seed,
                                 rank=rank, world_size=world_size)
    return TrainData(dataset, sampler, buckets, collate, dict(index.skipped), list(index.unreadable))


class _FromBatch:
    """A DataLoader batch_sampler that starts the sampler's stream at batch `start` (the resume position)."""

    def __init__(self, sampler: BucketBatchSampler, start: int):
        self.sampler, self.start = sampler, start

    def __iter__(self):
        return self.sampler.batches(self.start)


def loader(data: TrainData, start: int, num_workers: int) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(data.dataset, batch_sampler=_FromBatch(data.sampler, start),
                                       collate_fn=data.collate, num_workers=num_workers,
                                       persistent_workers=False)


def precompute_from_config(config: TrainConfig, folder, *, overwrite: bool = False, models: dict | None = None):
    """Cache the latents and text embeddings of the config's media data (its VAE, text encoder and buckets)."""
    import dataclasses

    from vidgen.data.precompute import precompute
    from vidgen.train.dit_task import DiTTask
    if config.data.cache is not None:
        raise ValueError("precompute reads media: give data.folder or data.manifest, not data.cache")
    task = DiTTask.build(config, models)
    if task.text is None:
        raise ValueError("precompute needs text_encoder: the cache stores text embeddings")
    centred = dataclasses.replace(config, data=dataclasses.replace(config.data, random_crop=False))
    data = build_data(centred, task.factors)
    return precompute(data.dataset, task.vae, task.text, task.dit.config.text_len, folder, overwrite=overwrite)
