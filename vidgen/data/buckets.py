"""Buckets of (frames, height, width) and a batch sampler that draws every batch from one bucket.

The sampler is a pure function of (seed, batch number): `batches(start=n)` replays the same stream from batch n, which is
how a resumed run continues exactly where it stopped. Image and video batches are mixed by `image_ratio`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Iterator, NamedTuple

from vidgen.data.media import MediaInfo

TIME_FACTOR = 4  # T = 1 + 4k pixel frames ⇔ 1 + k latent frames
SPACE_FACTOR = 16  # VAE 8× and DiT patch 2×


@dataclass(frozen=True)
class Bucket:
    frames: int
    height: int
    width: int

    @property
    def is_image(self) -> bool:
        return self.frames == 1


class SampleKey(NamedTuple):
    """What the dataset is asked for: item `item` cropped into bucket `bucket`; `draw` seeds its random choices."""

    item: int
    bucket: int
    draw: int


def validate_buckets(buckets, time_factor: int = TIME_FACTOR, space_factor: int = SPACE_FACTOR) -> list[Bucket]:
    """Buckets as `Bucket`s, checking that each fits the model: frames = 1 + 4k, height and width multiples of 16."""
    out = []
    for b in buckets:
        if len(b) != 3:
            raise ValueError(f"a bucket is (frames, height, width), got {b!r}")
        t, h, w = (int(v) for v in b)
        if t < 1 or (t - 1) % time_factor:
            raise ValueError(f"bucket {tuple(b)}: frames must be 1 + {time_factor}k (1, 5, 9, 13, 17, ...), got {t}")
        if h < space_factor or w < space_factor or h % space_factor or w % space_factor:
            raise ValueError(f"bucket {tuple(b)}: height and width must be positive multiples of {space_factor}, "
                             f"got {h}x{w}")
        out.append(Bucket(t, h, w))
    if not out:
        raise ValueError("no buckets given; expected a list of [frames, height, width]")
    return out


def frame_stride(info: MediaInfo, fps: float | None) -> float:
    """Source frames per target frame (1 when the target fps is unset or the file's fps is unknown)."""
    if not fps or info.fps <= 0:
        return 1.0
    return info.fps / fps


def clip_fits(info: MediaInfo, frames: int, fps: float | None) -> bool:
    return (frames - 1) * frame_stride(info, fps) + 1 <= info.num_frames + 1e-6


def assign_buckets(info: MediaInfo, image: bool, buckets: list[Bucket], fps: float | None,
                   images_from_videos: bool) -> list[int]:
    """Bucket indices an item can fill: nearest aspect ratio; for videos the longest clip that fits at `fps`."""

    def nearest(candidates: list[int]) -> list[int]:
        if not candidates:
            return []
        aspect = math.log(info.width / info.height)
        best = min(abs(math.log(buckets[i].width / buckets[i].height) - aspect) for i in candidates)
        return [i for i in candidates if abs(math.log(buckets[i].width / buckets[i].height) - aspect) <= best + 1e-9]

    image_buckets = nearest([i for i, b in enumerate(buckets) if b.is_image])
    if image:
        return image_buckets[:1]
    out = []
    video_buckets = nearest([i for i, b in enumerate(buckets) if not b.is_image])
    fitting = [i for i in video_buckets if clip_fits(info, buckets[i].frames, fps)]
    if fitting:
        out.append(max(fitting, key=lambda i: buckets[i].frames))
    if images_from_videos and image_buckets:
        out.append(image_buckets[0])
    return out


class BucketBatchSampler:
    """An endless, replayable stream of batches of `SampleKey`s, each batch from one bucket.

    entries: (item, bucket) pairs. For each kind (image / video) the stream runs in epochs: every bucket's entries are
    shuffled and cut into full batches (the last one topped up with random repeats), and the epoch's batches shuffled.
    Each batch is an image batch with probability `image_ratio` when both kinds exist. With several processes, global
    batch g goes to rank g % world_size.
    """

    def __init__(self, entries: list[tuple[int, int]], buckets: list[Bucket], batch_size: int, *,
                 image_ratio: float = 0.0, seed: int = 0, rank: int = 0, world_size: int = 1):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0.0 <= image_ratio <= 1.0:
            raise ValueError(f"image_ratio must be in [0, 1], got {image_ratio}")
        if not entries:
            raise ValueError("the batch sampler got no samples")
        self.buckets, self.batch_size, self.image_ratio, self.seed = buckets, batch_size, image_ratio, seed
        self.rank, self.world_size = rank, world_size
        self.by_bucket: dict[int, list[int]] = {}
        for item, bucket in entries:
            self.by_bucket.setdefault(bucket, []).append(item)
        self.kinds = {kind: sorted(b for b in self.by_bucket if buckets[b].is_image == (kind == "image"))
                      for kind in ("image", "video")}

    def _epoch(self, kind: str, epoch: int) -> list[list[tuple[int, int]]]:
        rng = random.Random(f"{self.seed}/{kind}/{epoch}")
        batches = []
        for b in self.kinds[kind]:
            items = list(self.by_bucket[b])
            rng.shuffle(items)
            while len(items) % self.batch_size:
                items.append(rng.choice(self.by_bucket[b]))
            batches += [[(i, b) for i in items[k:k + self.batch_size]] for k in range(0, len(items), self.batch_size)]
        rng.shuffle(batches)
        return batches

    def _global(self) -> Iterator[list[tuple[int, int]]]:
        pick = random.Random(f"{self.seed}/kind")
        queues = {k: iter(()) for k in self.kinds}
        epochs = {k: 0 for k in self.kinds}
        present = [k for k in ("image", "video") if self.kinds[k]]
        while True:
            kind = present[0] if len(present) == 1 else ("image" if pick.random() < self.image_ratio else "video")
            batch = next(queues[kind], None)
            if batch is None:
                queues[kind] = iter(self._epoch(kind, epochs[kind]))
                epochs[kind] += 1
                batch = next(queues[kind])
            yield batch

    def batches(self, start: int = 0) -> Iterator[list[SampleKey]]:
        """This rank's batches from its batch number `start` on (replaying the stream up to there)."""
        for g, batch in enumerate(self._global()):
            step, rank = divmod(g, self.world_size)
            if step >= start and rank == self.rank:
                yield [SampleKey(i, b, g * self.batch_size + j) for j, (i, b) in enumerate(batch)]
