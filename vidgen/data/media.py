"""Reading media files as uint8 frames: videos through decord (falling back to PyAV), images through PIL.

An image is a 1-frame video. Every failure surfaces as `MediaError` so callers can skip the file and go on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

VIDEO_EXTS = frozenset({".mp4", ".webm", ".mov", ".gif", ".mkv", ".avi"})
IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".webp"})
MEDIA_EXTS = VIDEO_EXTS | IMAGE_EXTS


class MediaError(RuntimeError):
    """A file that cannot be read as media (missing, corrupt, empty, unknown format)."""


@dataclass(frozen=True)
class MediaInfo:
    num_frames: int
    fps: float  # frames per second of the file; 0 for images
    height: int
    width: int


def is_image(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTS


def probe(path: str | Path) -> MediaInfo:
    """Frame count, fps and size of a media file, without decoding more than needed."""
    path = Path(path)
    try:
        if is_image(path):
            from PIL import Image

            with Image.open(path) as im:
                im.verify()  # catches truncated or garbage files that open() alone accepts
            with Image.open(path) as im:
                w, h = im.size
            return MediaInfo(1, 0.0, h, w)
        try:
            return _probe_decord(path)
        except Exception:
            return _probe_av(path)
    except MediaError:
        raise
    except Exception as e:
        raise MediaError(f"{path}: cannot read ({type(e).__name__}: {e})") from None


def read_frames(path: str | Path, indices: list[int]) -> np.ndarray:
    """The given frames of a file as uint8 RGB (n, H, W, 3); images accept only index 0."""
    path = Path(path)
    try:
        if is_image(path):
            from PIL import Image

            if any(i != 0 for i in indices):
                raise MediaError(f"{path}: an image has only frame 0, asked for {indices}")
            with Image.open(path) as im:
                frame = np.asarray(im.convert("RGB"))
            return np.stack([frame] * len(indices))
        try:
            return _read_decord(path, indices)
        except Exception:
            return _read_av(path, indices)
    except MediaError:
        raise
    except Exception as e:
        raise MediaError(f"{path}: cannot decode frames ({type(e).__name__}: {e})") from None


def _probe_decord(path: Path) -> MediaInfo:
    import decord

    vr = decord.VideoReader(str(path), num_threads=1)
    n = len(vr)
    if n < 1:
        raise MediaError(f"{path}: no frames")
    h, w = vr[0].shape[:2]
    return MediaInfo(n, float(vr.get_avg_fps()), int(h), int(w))


def _read_decord(path: Path, indices: list[int]) -> np.ndarray:
    import decord

    vr = decord.VideoReader(str(path), num_threads=1)
    return vr.get_batch(list(indices)).asnumpy()


def _probe_av(path: Path) -> MediaInfo:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        n, h, w = 0, 0, 0
        for frame in container.decode(stream):  # stream.frames is 0 for many containers, so count by decoding
            n, h, w = n + 1, frame.height, frame.width
    if n < 1:
        raise MediaError(f"{path}: no decodable video frames")
    return MediaInfo(n, fps, h, w)


def _read_av(path: Path, indices: list[int]) -> np.ndarray:
    import av

    wanted = sorted(set(indices))
    got: dict[int, np.ndarray] = {}
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in wanted:
                got[i] = frame.to_ndarray(format="rgb24")
            if i >= wanted[-1]:
                break
    missing = [i for i in wanted if i not in got]
    if missing:
        raise MediaError(f"{path}: frames {missing} not found")
    return np.stack([got[i] for i in indices])
