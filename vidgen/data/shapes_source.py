"""The procedural shapes world (vidgen.shapes) as a training source rendered on the fly: no files, no decoding.

Item i is `ShapesDataset(n, seed, split=..., image_ratio=..., partial_captions=..., extra_colours=...,
extra_fraction=...)[i]`, a clip of the first video
bucket's size and length or, for the world's image items, a single frame; so the buckets are exactly those two.
"""

from __future__ import annotations

import torch

from vidgen.data.buckets import Bucket, SampleKey


class ShapesSource(torch.utils.data.Dataset):
    """`source[SampleKey]` → {"video": (3, T, H, W) in [-1, 1], "caption": str, "bad_files": []}."""

    def __init__(self, n: int, buckets: list[Bucket], *, seed: int = 0, split: str = "train",
                 image_ratio: float = 0.0, partial_captions: float = 0.0, extra_colours: tuple[str, ...] = (),
                 extra_fraction: float = 0.0):
        from vidgen.shapes.dataset import ShapesDataset

        video = next((b for b in buckets if not b.is_image), None)
        image = next((b for b in buckets if b.is_image), None)
        if video is None:
            raise ValueError(f"the shapes source needs a video bucket [frames, height, width], got {buckets}")
        if image_ratio > 0 and (image is None or (image.height, image.width) != (video.height, video.width)):
            raise ValueError(f"shapes images (image_ratio={image_ratio}) need a bucket [1, {video.height}, "
                             f"{video.width}], got {buckets}")
        self.world = ShapesDataset(n, seed, frames=video.frames, size=(video.height, video.width),
                                   split=split, image_ratio=image_ratio, partial_captions=partial_captions,
                                   extra_colours=extra_colours, extra_fraction=extra_fraction)
        self.buckets = [video] + ([image] if image is not None else [])
        self.entries = [(i, 1 if self.world.is_image(i) else 0) for i in range(n)]

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, key: SampleKey) -> dict:
        item = self.world[key.item]
        return {"video": item["video"], "caption": item["caption"], "bad_files": []}
