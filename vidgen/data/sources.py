"""Where samples come from: a folder of media files with sidecar captions, or a CSV/JSONL manifest.

A manifest row has `path` (relative to the manifest's folder or absolute), `caption`, and optionally `fps`, `frames`,
`height`, `width`; when all four are given the file is not probed. A folder's captions come from `<name>.txt` beside
each file (empty caption when there is none).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from vidgen.data.media import MEDIA_EXTS, MediaInfo


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
