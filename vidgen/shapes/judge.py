"""Judging a clip of the shapes world from its pixels alone: background, object colour, shape, direction, object count.

The rules: the background is the palette background nearest to the median border colour; the object mask is
the pixels far from that measured background; its colour is the palette colour nearest to the median of the mask's
interior; its shape comes from how much of its bounding box it fills (circle π/4, square 1, triangle 1/2); its
direction from the centroid's motion over the first frames; and "one object" means exactly one connected component of the mask
above a minimum area.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from vidgen.shapes.world import BACKGROUNDS, COLOURS, Caption, ClipSpec, parse_caption

MASK_THRESHOLD = 60.0  # RGB distance (0..255 scale) from the background; every palette pair is ≥ 110 apart
MIN_AREA_FRACTION = 0.005  # of the frame; the smallest object (a triangle of side 20% W) covers 2% of a square frame
DIRECTION_FRAMES = 4  # the world guarantees this many frames in the captioned direction before a bounce
# Fill-ratio boundaries, halfway between triangle (0.5) and circle (π/4 ≈ 0.785), and circle and square (1.0).
TRIANGLE_CIRCLE_FILL = 0.64
CIRCLE_SQUARE_FILL = 0.89
MIN_MOTION_PX = 0.25  # slower centroid motion than this (pixels per frame) counts as not moving


@dataclass(frozen=True)
class Verdict:
    """What one clip shows. Fields are None where they cannot be judged (no object; direction of a single frame)."""

    background: str
    colour: str | None
    shape: str | None
    direction: str | None
    objects_per_frame: tuple[int, ...]  # components above the minimum area, per frame
    fill_ratio: float  # median over frames of object area / bounding-box area (nan without an object)
    velocity: tuple[float, float]  # centroid (dx, dy) in pixels per frame over the first frames; y grows downwards

    @property
    def one_object_fraction(self) -> float:
        return sum(n == 1 for n in self.objects_per_frame) / len(self.objects_per_frame)

    @property
    def caption(self) -> str | None:
        """The caption this clip would have, or None if any part could not be judged."""
        if None in (self.colour, self.shape, self.direction):
            return None
        return Caption(self.colour, self.shape, self.direction, self.background).text


def judge_clip(
    frames,
    *,
    mask_threshold: float = MASK_THRESHOLD,
    min_area_fraction: float = MIN_AREA_FRACTION,
    direction_frames: int = DIRECTION_FRAMES,
    palette: dict[str, tuple[int, int, int]] = COLOURS,
) -> Verdict:
    """Judge frames (T, H, W, 3) or one frame (H, W, 3): uint8, or float in [0, 1] (numpy or torch); the object's
    colour is the nearest in `palette`: `world.PALETTE` reads the world's extra colours too (judging a model taught
    one), and is stricter on its own colours, since a red or yellow drifting towards orange is then read as orange."""
    video = _as_float255(frames)  # (T, H, W, 3) float32 in [0, 255]
    t, h, w, _ = video.shape
    border = np.concatenate(
        [video[:, 0].reshape(-1, 3), video[:, -1].reshape(-1, 3), video[:, :, 0].reshape(-1, 3),
         video[:, :, -1].reshape(-1, 3)]
    )
    bg = np.median(border, axis=0)
    background = _nearest(bg, BACKGROUNDS)
    diff = video - bg.astype(np.float32)
    mask = np.einsum("thwc,thwc->thw", diff, diff) > mask_threshold**2  # (T, H, W): far from the background
    min_area = max(4, int(round(min_area_fraction * h * w)))

    labels = _label(mask)
    counts, objects = [], []  # objects[i]: boolean (H, W) mask of frame i's largest component, or None
    for i in range(t):
        ids, areas = np.unique(labels[i][labels[i] > 0], return_counts=True)
        big = areas >= min_area
        counts.append(int(big.sum()))
        objects.append(labels[i] == ids[np.argmax(areas)] if big.any() else None)
    found = [o for o in objects if o is not None]
    if not found:
        return Verdict(background, None, None, None, tuple(counts), math.nan, (0.0, 0.0))

    # Colour: the interior (4-neighbourhood inside the mask) avoids anti-aliased and blurred edges.
    pixels = []
    for i, obj in enumerate(objects):
        if obj is not None:
            core = _erode(obj)
            pixels.append(video[i][core if core.any() else obj])
    colour = _nearest(np.median(np.concatenate(pixels), axis=0), palette)

    # Shape: prefer frames with exactly one object (a second blob may be a fragment of a broken object).
    clean = [o for o, n in zip(objects, counts) if n == 1] or found
    fill = float(np.median([_fill_ratio(o) for o in clean]))
    shape = "triangle" if fill < TRIANGLE_CIRCLE_FILL else "circle" if fill < CIRCLE_SQUARE_FILL else "square"

    velocity, direction = (0.0, 0.0), None
    steps = [(i, _centroid(o)) for i, o in enumerate(objects[:direction_frames]) if o is not None]
    if len(steps) >= 2:
        ts = np.array([s[0] for s in steps], dtype=np.float64)
        cs = np.array([s[1] for s in steps])  # (n, 2) as (cx, cy)
        vx, vy = (float(np.polyfit(ts, cs[:, k], 1)[0]) for k in range(2))
        velocity = (vx, vy)
        if max(abs(vx), abs(vy)) >= MIN_MOTION_PX:
            direction = ("right" if vx > 0 else "left") if abs(vx) >= abs(vy) else ("down" if vy > 0 else "up")
    return Verdict(background, colour, shape, direction, tuple(counts), fill, velocity)


def score(verdicts: Sequence[Verdict], specs: Sequence[ClipSpec | Caption | str]) -> dict[str, float]:
    """Accuracies of `verdicts` against the clips' true captions.

    Keys: background, colour, shape, direction (over clips of ≥ 2 frames only), all (every judged attribute right),
    one_object (mean fraction of frames with exactly one object), n.
    """
    if len(verdicts) != len(specs):
        raise ValueError(f"got {len(verdicts)} verdicts for {len(specs)} specs; expected one verdict per clip")
    if not verdicts:
        raise ValueError("cannot score zero clips")
    truths = [_caption_of(s) for s in specs]
    out = {k: _mean(getattr(v, k) == getattr(c, k) for v, c in zip(verdicts, truths))
           for k in ("background", "colour", "shape")}
    moving = [(v, c) for v, c in zip(verdicts, truths) if len(v.objects_per_frame) > 1]
    out["direction"] = _mean(v.direction == c.direction for v, c in moving) if moving else math.nan
    out["all"] = _mean(
        v.background == c.background and v.colour == c.colour and v.shape == c.shape
        and (len(v.objects_per_frame) == 1 or v.direction == c.direction)
        for v, c in zip(verdicts, truths)
    )
    out["one_object"] = float(np.mean([v.one_object_fraction for v in verdicts]))
    out["n"] = float(len(verdicts))
    return out


def score_by_split(
    verdicts: Sequence[Verdict], specs: Sequence[ClipSpec | Caption | str]
) -> dict[str, dict[str, float]]:
    """`score` separately over seen ("train") and held-out ("heldout") captions; a split without clips is left out."""
    if len(verdicts) != len(specs):
        raise ValueError(f"got {len(verdicts)} verdicts for {len(specs)} specs; expected one verdict per clip")
    out = {}
    for split, held in (("train", False), ("heldout", True)):
        pairs = [(v, s) for v, s in zip(verdicts, specs) if _caption_of(s).heldout == held]
        if pairs:
            out[split] = score(*zip(*pairs))
    return out


def _caption_of(spec: ClipSpec | Caption | str) -> Caption:
    if isinstance(spec, ClipSpec):
        return spec.caption
    if isinstance(spec, Caption):
        return spec
    if isinstance(spec, str):
        return parse_caption(spec)
    raise TypeError(f"expected a ClipSpec, Caption or caption string, got {type(spec).__name__}")


def _mean(flags: Iterable[bool]) -> float:
    flags = list(flags)
    return sum(flags) / len(flags)


def _as_float255(frames) -> np.ndarray:
    if hasattr(frames, "detach"):  # torch tensor
        frames = frames.detach().cpu().numpy()
    arr = np.asarray(frames)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.shape[0] < 1:
        raise ValueError(f"expected frames (T, H, W, 3) or one frame (H, W, 3), got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32)
    if np.issubdtype(arr.dtype, np.floating):
        return np.clip(arr.astype(np.float32), 0.0, 1.0) * 255.0
    raise ValueError(f"expected uint8 frames or float frames in [0, 1], got dtype {arr.dtype}")


def _nearest(rgb: np.ndarray, palette: dict[str, tuple[int, int, int]]) -> str:
    names = list(palette)
    d = np.linalg.norm(np.asarray([palette[n] for n in names], dtype=np.float64) - rgb, axis=1)
    return names[int(np.argmin(d))]


def _label(mask: np.ndarray) -> np.ndarray:
    """8-connected component labels of a boolean (T, H, W) mask, frame by frame: 0 outside, > 0 inside.

    Each pixel starts with its own index as label and repeatedly takes the largest label in its 3×3 neighbourhood,
    then the label its label points at (pointer jumping, which shortens the chains), until nothing changes; every
    component ends up labelled by its largest pixel index.
    """
    labels = np.where(mask, np.arange(1, mask.size + 1).reshape(mask.shape), 0)
    while True:
        best = labels.copy()
        best[:, 1:] = np.maximum(best[:, 1:], labels[:, :-1])  # 3×3 maximum, separably: rows, then columns
        best[:, :-1] = np.maximum(best[:, :-1], labels[:, 1:])
        rows = best.copy()
        best[:, :, 1:] = np.maximum(best[:, :, 1:], rows[:, :, :-1])
        best[:, :, :-1] = np.maximum(best[:, :, :-1], rows[:, :, 1:])
        best = np.where(mask, best, 0)
        inside = best > 0
        best[inside] = np.maximum(best[inside], best.reshape(-1)[best[inside] - 1])
        if np.array_equal(best, labels):
            return labels
        labels = best


def _erode(mask: np.ndarray) -> np.ndarray:
    """Pixels whose 4 neighbours are all in `mask` (outside the frame counts as outside the mask)."""
    p = np.pad(mask, 1)
    return mask & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]


def _fill_ratio(mask: np.ndarray) -> float:
    ys, xs = np.nonzero(mask)
    box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
    return len(ys) / box


def _centroid(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.mean()), float(ys.mean())
