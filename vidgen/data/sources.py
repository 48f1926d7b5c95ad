"""Where samples come from: a folder of media files with sidecar captions, a CSV/JSONL manifest, or a source rendered
on the fly (`DATA_SOURCES`, e.g. the shapes world).

A manifest row has `path` (relative to the manifest's folder or absolute), `caption`, and optionally `fps`, `frames`,
`height`, `width`; when all four are given the file is not probed. A folder's captions come from `<name>.txt` beside
each file (empty caption when there is none).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vidgen.data.media import MEDIA_EXTS, MediaInfo

if TYPE_CHECKING:
    import torch

    from vidgen.data.buckets import Bucket


@dataclass(frozen=True)
class MediaItem:
    path: Path
    caption: str
    info: MediaInfo | None = None  # known from the manifest; None means probe the file


def scan_folder(root: str | Path) -> list[MediaItem]:
    """Every media file under `root` (recursively, sorted), with its sidecar `.txt` caption."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    items = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_EXTS):
        side = path.with_suffix(".txt")
        caption = side.read_text(encoding="utf-8").strip() if side.is_file() else ""
        items.append(MediaItem(path, caption))
    return items


def read_manifest(manifest: str | Path) -> list[MediaItem]:
    """Rows of a .csv (with a header) or .jsonl manifest as media items."""
    manifest = Path(manifest)
    if not manifest.is_file():
        raise FileNotFoundError(f"manifest not found: {manifest}")
    if manifest.suffix.lower() == ".csv":
        with manifest.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    elif manifest.suffix.lower() in (".jsonl", ".json"):
        lines = manifest.read_text(encoding="utf-8").splitlines()
        rows = []
        for n, line in enumerate(lines, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{manifest}:{n}: not valid JSON ({e})") from None
    else:
        raise ValueError(f"manifest {manifest} must be .csv or .jsonl, got {manifest.suffix!r}")
    items = []
    for n, row in enumerate(rows, 1):
        if not row.get("path"):
            raise ValueError(f"{manifest}: row {n} has no 'path'; "
                             "columns are path, caption[, fps, frames, height, width]")
        path = Path(row["path"])
        path = path if path.is_absolute() else manifest.parent / path
        info = None
        if all(row.get(k) not in (None, "") for k in ("fps", "frames", "height", "width")):
            info = MediaInfo(int(row["frames"]), float(row["fps"]), int(row["height"]), int(row["width"]))
        items.append(MediaItem(path, str(row.get("caption") or ""), info))
    return items


# --- data rendered on the fly ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataSource:
    """Training data rendered on the fly instead of read from files, turned on by `data.<name>: N` in the config. Its
    own modules are imported by these functions only, when a config uses it."""

    splits: Callable[[], tuple[str, ...]]  # the names `data.<name>_split` may take
    # (n, buckets, *, seed, split, image_ratio, partial_captions, extra_colours, extra_fraction) → a dataset keyed by
    # `SampleKey`, with `.entries` (item, bucket index) and `.buckets`
    build: Callable[..., torch.utils.data.Dataset]


def _shapes_splits() -> tuple[str, ...]:
    from vidgen.shapes.world import SPLITS

    return SPLITS


def _shapes_source(n: int, buckets: list[Bucket], **options) -> torch.utils.data.Dataset:
    from vidgen.data.shapes_source import ShapesSource

    return ShapesSource(n, buckets, **options)


DATA_SOURCES: dict[str, DataSource] = {"shapes": DataSource(_shapes_splits, _shapes_source)}
