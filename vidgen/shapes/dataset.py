"""Datasets of the shapes world: a torch `Dataset` for training directly, and a writer of mp4 + caption folders.

Item `i` of a dataset with seed `s` is always the same clip: its random numbers come from `default_rng([s, i])`.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from vidgen.files import atomic_folder
from vidgen.pixels import uint8_to_signed
from vidgen.shapes.world import (
    DEFAULT_FRAMES, DEFAULT_SIZE, FPS, PARTIAL_TEMPLATES, ClipSpec, partial_caption, render_clip, sample_spec,
)
from vidgen.video_io import save_video

MANIFEST = "manifest.jsonl"
PLAYABLE_CRF = 12  # playable (lossy) files: finer than video_io's default, as they are training data


def item_spec(seed: int, index: int, split: str = "train", image_ratio: float = 0.0,
              extra_colours: tuple[str, ...] = (), extra_fraction: float = 0.0) -> tuple[ClipSpec, bool]:
    """The spec of item `index` and whether it is an image (1 frame); a pure function of its arguments.

    With `extra_fraction` > 0, that fraction of items (drawn from their own stream `default_rng([seed, index, 2])`)
    show one of `extra_colours` (world.EXTRA_COLOURS) instead, on any shape, direction and background; the others are
    the clips they are without it."""
    if not 0.0 <= image_ratio <= 1.0:
        raise ValueError(f"image_ratio is the fraction of 1-frame items, expected in [0, 1], got {image_ratio}")
    if not 0.0 <= extra_fraction <= 1.0 or (extra_fraction > 0) != bool(extra_colours):
        raise ValueError(f"extra_fraction is the fraction of items in extra_colours, expected in (0, 1] with colours "
                         f"named or 0 without, got {extra_fraction} with {list(extra_colours)}")
    rng = np.random.default_rng([seed, index])
    is_image = bool(rng.random() < image_ratio)
    if extra_fraction > 0 and np.random.default_rng([seed, index, 2]).random() < extra_fraction:
        return sample_spec(rng, "all", colours=tuple(extra_colours)), is_image
    return sample_spec(rng, split), is_image


def item_caption(seed: int, index: int, spec: ClipSpec, partial_captions: float = 0.0) -> str:
    """The caption item `index` is trained with: its spec's caption or, with probability `partial_captions`, that
    caption with one attribute left out (chosen uniformly; `world.partial_caption`). Drawn from its own random stream
    `default_rng([seed, index, 1])`, so the clip itself does not depend on `partial_captions`."""
    if not 0.0 <= partial_captions <= 1.0:
        raise ValueError(f"partial_captions is the fraction of items captioned with one attribute left out, expected "
                         f"in [0, 1], got {partial_captions}")
    if partial_captions == 0.0:
        return spec.text
    rng = np.random.default_rng([seed, index, 1])
    if rng.random() >= partial_captions:
        return spec.text
    attributes = list(PARTIAL_TEMPLATES)
    return partial_caption(spec.caption, attributes[int(rng.integers(len(attributes)))])


class ShapesDataset(Dataset):
    """`n` seeded items {"video": float (3, T, H, W) in [-1, 1], "caption": str}; images have T = 1. A fraction
    `extra_fraction` of them show `extra_colours` (see `item_spec`).

    With 0 < image_ratio < 1, items have different T and the default collate cannot stack them: use batch size 1 or
    group by `is_image(i)`.
    """

    def __init__(
        self,
        n: int,
        seed: int = 0,
        *,
        frames: int = DEFAULT_FRAMES,
        size: int | tuple[int, int] = DEFAULT_SIZE,
        split: str = "train",
        image_ratio: float = 0.0,
        partial_captions: float = 0.0,
        extra_colours: tuple[str, ...] = (),
        extra_fraction: float = 0.0,
    ):
        if n < 1:
            raise ValueError(f"a dataset needs n >= 1 items, got {n}")
        if (frames - 1) % 4:
            raise ValueError(f"frames must be 1 + 4k (the VAE's causal grouping), got {frames}")
        self.extra = (tuple(extra_colours), extra_fraction)
        spec, _ = item_spec(seed, 0, split, image_ratio, *self.extra)  # validates the arguments now, not at first use
        item_caption(seed, 0, spec, partial_captions)
        self.n, self.seed, self.frames, self.size = n, seed, frames, size
        self.split, self.image_ratio, self.partial_captions = split, image_ratio, partial_captions

    def __len__(self) -> int:
        return self.n

    def spec(self, index: int) -> ClipSpec:
        return item_spec(self.seed, self._check(index), self.split, self.image_ratio, *self.extra)[0]

    def is_image(self, index: int) -> bool:
        return item_spec(self.seed, self._check(index), self.split, self.image_ratio, *self.extra)[1]

    def __getitem__(self, index: int) -> dict:
        index = self._check(index)
        spec, is_image = item_spec(self.seed, index, self.split, self.image_ratio, *self.extra)
        frames = render_clip(spec, 1 if is_image else self.frames, self.size)  # (T, H, W, 3) uint8
        video = uint8_to_signed(frames)[0]  # (3, T, H, W) in [-1, 1]
        return {"video": video, "caption": item_caption(self.seed, index, spec, self.partial_captions)}

    def _check(self, index: int) -> int:
        if not -self.n <= index < self.n:
            raise IndexError(f"index {index} out of range for a dataset of {self.n} items")
        return index % self.n


def write_dataset(
    folder: str | Path,
    n: int,
    seed: int = 0,
    *,
    frames: int = DEFAULT_FRAMES,
    size: int | tuple[int, int] = DEFAULT_SIZE,
    split: str = "train",
    image_ratio: float = 0.0,
    fps: int = FPS,
    lossless: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write items 0..n-1 of `ShapesDataset(n, seed, ...)` to `folder` as NNNNNN.mp4 + NNNNNN.txt + manifest.jsonl.

    Captions on disk are always the full ones (`ClipSpec.text`): partial captions are a training-time option of the
    on-the-fly source (`ShapesDataset(partial_captions=...)`, `data.partial_captions`), not a property of the data.

    Videos are H.264. `lossless` (default): RGB at CRF 0, decoded back exactly (PyAV, decord); training data should
    not carry codec error. Otherwise yuv420p at CRF 12, which plays everywhere but, at 64×64, subsampled chroma costs
    ~36 dB PSNR with errors up to ~90/255 at coloured edges. The folder appears complete or not at all; an existing
    one is an error unless `overwrite`.
    """
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise FileExistsError(f"{folder} already exists; pass overwrite=True to replace it or choose another folder")
    ShapesDataset(n, seed, frames=frames, size=size, split=split, image_ratio=image_ratio)  # validates arguments first
    with atomic_folder(folder) as tmp:
        with open(tmp / MANIFEST, "w") as manifest:
            for i in range(n):
                spec, is_image = item_spec(seed, i, split, image_ratio)
                clip = render_clip(spec, 1 if is_image else frames, size)
                name = f"{i:06d}"
                if not lossless and (clip.shape[1] % 2 or clip.shape[2] % 2):
                    raise ValueError(f"yuv420p needs even height and width, got {clip.shape[1]}x{clip.shape[2]}; "
                                     "use lossless=True or resize")
                save_video(clip, tmp / f"{name}.mp4", fps=fps, lossless=lossless, crf=PLAYABLE_CRF)
                (tmp / f"{name}.txt").write_text(spec.text + "\n")
                record = {"path": f"{name}.mp4", "caption": spec.text, "fps": fps, "frames": len(clip),
                          "spec": asdict(spec)}
                manifest.write(json.dumps(record) + "\n")
    return folder


def read_manifest(folder: str | Path) -> list[dict]:
    """The records of a folder written by `write_dataset`, with `path` made absolute."""
    folder = Path(folder)
    with open(folder / MANIFEST) as f:
        records = [json.loads(line) for line in f if line.strip()]
    for r in records:
        r["path"] = str(folder / r["path"])
    return records
