"""A map-style dataset of media clips addressed by `SampleKey`, its index (probing, bucketing, skipping bad files),
and the collate function.

A file that fails to open is skipped with one warning; one that fails later while decoding is replaced by the next
item of the same bucket, and its path travels with the batch (`batch["bad_files"]`) so the trainer counts it even when
the failure happened in a loader worker.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field

import torch

from vidgen.data.buckets import Bucket, SampleKey, assign_buckets
from vidgen.data.media import MediaError, MediaInfo, is_image, probe, read_frames
from vidgen.data.sources import MediaItem
from vidgen.data.transforms import clip_indices, resize_crop

log = logging.getLogger(__name__)


@dataclass
class MediaIndex:
    """The usable items with their media info, the (item, bucket) entries they fill, and what was skipped."""

    items: list[MediaItem]
    infos: list[MediaInfo]
    entries: list[tuple[int, int]]
    skipped: dict[str, str] = field(default_factory=dict)  # path -> reason (unreadable, or no bucket fits)
    unreadable: list[str] = field(default_factory=list)  # the skipped paths that could not be read at all


def build_index(items: list[MediaItem], buckets: list[Bucket], *, fps: float | None = None,
                images_from_videos: bool = False, where: str = "dataset") -> MediaIndex:
    """Probe every item, drop unreadable ones (one warning each) and those no bucket can take; error if none is left."""
    index = MediaIndex([], [], [])
    for item in items:
        try:
            info = item.info or probe(item.path)
        except MediaError as e:
            log.warning("skipping unreadable file: %s", e)
            index.skipped[str(item.path)] = str(e)
            index.unreadable.append(str(item.path))
            continue
        fits = assign_buckets(info, is_image(item.path) or info.num_frames == 1, buckets, fps, images_from_videos)
        if not fits:
            index.skipped[str(item.path)] = (f"no bucket fits {info.num_frames} frames at {info.fps:g} fps, "
                                             f"{info.width}x{info.height}")
            continue
        n = len(index.items)
        index.items.append(item)
        index.infos.append(info)
        index.entries += [(n, b) for b in fits]
    if not index.items:
        kinds = ", ".join(f"{p}: {r}" for p, r in list(index.skipped.items())[:5])
        raise ValueError(f"{where}: no usable media files among {len(items)} found (supported: mp4, webm, mov, gif, "
                         f"png, jpg, webp; clips need at least the bucket's frame count at the target fps). "
                         f"Skipped: {kinds or 'nothing to skip'}; "
                         f"buckets: {[(b.frames, b.height, b.width) for b in buckets]}")
    return index


class MediaDataset(torch.utils.data.Dataset):
    """`dataset[SampleKey]` → {"video": (3, T, H, W) in [-1, 1], "caption": str, "bad_files": [paths]}."""

    def __init__(self, index: MediaIndex, buckets: list[Bucket], *, fps: float | None = None,
                 random_crop: bool = False, seed: int = 0):
        self.index, self.buckets, self.fps, self.random_crop, self.seed = index, buckets, fps, random_crop, seed
        self.members: dict[int, list[int]] = {}
        for item, bucket in index.entries:
            self.members.setdefault(bucket, []).append(item)
        self._warned: set[str] = set()

    @property
    def entries(self) -> list[tuple[int, int]]:
        return self.index.entries

    def __len__(self) -> int:
        return len(self.index.entries)

    def __getitem__(self, key: SampleKey) -> dict:
        bucket = self.buckets[key.bucket]
        members = self.members[key.bucket]
        start = members.index(key.item)
        bad = []
        for k in range(len(members)):  # the asked-for item, then its bucket-mates in order
            item = members[(start + k) % len(members)]
            try:
                video = self._load(item, bucket, random.Random(f"{self.seed}/{key.draw}/{item}"))
                return {"video": video, "caption": self.index.items[item].caption, "bad_files": bad}
            except MediaError as e:
                path = str(self.index.items[item].path)
                bad.append(path)
                if path not in self._warned:
                    self._warned.add(path)
                    log.warning("skipping undecodable file: %s", e)
        raise RuntimeError(f"every file in bucket {bucket} failed to decode: {bad}")

    def _load(self, item: int, bucket: Bucket, rng: random.Random) -> torch.Tensor:
        info = self.index.infos[item]
        indices = clip_indices(info, bucket.frames, self.fps, rng)
        frames = read_frames(self.index.items[item].path, indices)
        return resize_crop(frames, bucket.height, bucket.width, rng, self.random_crop)


def collate(samples: list[dict]) -> dict:
    """Stack one bucket's samples: {"video": (B, 3, T, H, W), "caption": [str], "bad_files": [paths]}."""
    return {
        "video": torch.stack([s["video"] for s in samples]),
        "caption": [s["caption"] for s in samples],
        "bad_files": sorted({p for s in samples for p in s["bad_files"]}),
    }
