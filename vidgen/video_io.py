"""Writing and reading results: mp4 (H.264) and webm (VP9) through PyAV, gif and single-frame images through Pillow.

Every file is written to a temporary name in the destination folder and renamed when complete, so a crash never
leaves a half-written output under the final name, and an existing file is never replaced unless asked.
"""

from __future__ import annotations

import math
import numbers
import os
import warnings
from pathlib import Path

import numpy as np
import torch

# suffix -> (PyAV codec, pixel format)
VIDEO_FORMATS = {
    ".mp4": ("libx264", "yuv420p"),
    ".mkv": ("libx264", "yuv420p"),
    ".mov": ("libx264", "yuv420p"),
    ".webm": ("libvpx-vp9", "yuv420p"),
}
# Pillow: images, and gif (its adaptive per-frame palette looks far better than FFmpeg's fixed rgb8 one)
IMAGE_FORMATS = (".png", ".jpg", ".jpeg")
PILLOW_FORMATS = IMAGE_FORMATS + (".gif",)
WRITABLE = (*sorted(VIDEO_FORMATS), *PILLOW_FORMATS)  # every suffix vidgen writes
DEFAULT_FPS = 16
# A fixed encoder thread count: x264's and libvpx's output depends on it (not on timing), and left alone they pick it
# from the CPUs the process may use, so the same clip would give other bytes on another machine or CPU affinity.
ENCODER_THREADS = 4
H264_CRF = 18  # visually near-lossless; the library default (23) visibly blurs small generated videos
# Lossless H.264 stores RGB itself (no 4:2:0 chroma), so it decodes bit-exact; players other than FFmpeg may refuse it.
LOSSLESS_FORMATS = (".mp4", ".mkv", ".mov")


def check_output_path(path: str | Path, overwrite: bool = False) -> Path:
    """Fail early, before any heavy work, if `path` cannot be written: unknown suffix, missing or read-only folder,
    or an existing file without `overwrite`."""
    path = Path(path)
    if path.suffix.lower() not in WRITABLE:
        raise ValueError(f"cannot write {str(path)!r}: unknown file type {path.suffix.lower() or '(none)'!r}; "
                         f"expected one of {list(WRITABLE)}")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write {str(path)!r}: the folder {str(folder)!r} does not exist "
                                f"(or is not a folder); create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write {str(path)!r}: the folder {str(folder)!r} is not writable")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{str(path)!r} already exists; pass overwrite=True (--overwrite) to replace it")
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {str(path)!r}: it is a folder")
    return path


def _as_array(frames) -> np.ndarray:
    """Frames as numpy (T, H, W, 3), uint8 or finite float, from numpy, torch or a list of PIL images."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu()
        frames = frames.float().numpy() if frames.dtype != torch.uint8 else frames.numpy()
    elif isinstance(frames, (list, tuple)) and frames and hasattr(frames[0], "convert"):  # PIL images: one video
        frames = np.stack([np.asarray(im.convert("RGB")) for im in frames])
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must have shape (T, H, W, 3) or (H, W, 3), got {frames.shape}")
    if frames.dtype == np.uint8:
        return frames
    if not np.issubdtype(frames.dtype, np.floating):
        raise TypeError(f"frames must be uint8 or float in [0, 1], got {frames.dtype}")
    if not np.isfinite(frames.min()) or not np.isfinite(frames.max()):  # min/max propagate NaN: no mask needed
        bad = np.count_nonzero(~np.isfinite(frames))
        raise ValueError(f"frames hold {bad} NaN or infinite values of {frames.size}; expected finite values in [0, 1]")
    return frames


def _warn_out_of_range(frames: np.ndarray) -> bool:
    """Warn if float `frames` hold values outside [0, 1]; returns whether it warned."""
    lo, hi = float(frames.min()), float(frames.max())
    if lo >= 0.0 and hi <= 1.0:
        return False
    outside = np.count_nonzero((frames < 0.0) | (frames > 1.0))
    warnings.warn(f"{outside} of {frames.size} frame values lie outside [0, 1] (min {lo:.4g}, max {hi:.4g}); "
                  "they are clipped to [0, 1]", UserWarning, stacklevel=3)
    return True


def _quantize(frames: np.ndarray) -> np.ndarray:
    return frames if frames.dtype == np.uint8 else (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def check_frame_count(path: str | Path, num_frames: int) -> None:
    """An image file holds one frame: ValueError for more, before any work."""
    if Path(path).suffix.lower() in IMAGE_FORMATS and num_frames != 1:
        raise ValueError(f"{str(path)!r} is an image file but --frames is {num_frames}; use --frames 1, or a video "
                         "suffix such as .mp4")


def to_uint8(frames) -> np.ndarray:
    """Frames (T, H, W, 3) or one frame (H, W, 3) as numpy/torch, float in [0, 1] or uint8, or a list of PIL images
    → uint8 (T, H, W, 3); floats are clipped to [0, 1] silently."""
    return _quantize(_as_array(frames))


def _gif_durations(num_frames: int, fps: float) -> list[int]:
    """Per-frame GIF delays in ms, whole centiseconds (GIF's unit), so that frame i starts at round(i·100/fps) cs."""
    starts = [round(i * 100 / fps) for i in range(num_frames + 1)]
    return [10 * (b - a) for a, b in zip(starts, starts[1:])]


def _temp_name(path: Path) -> Path:
    # Same folder (so the rename is atomic), same suffix (PyAV picks the container from it), hidden, unique.
    return path.with_name(f".{path.stem}.tmp{os.getpid()}-{id(path):x}{path.suffix}")


class VideoWriter:
    """Incremental writer: open, `write` frames as they come, `close` → atomic rename onto `path`.

    Use as a context manager; on an exception the temporary file is removed and `path` is untouched.
    `lossless` (H.264 files only) encodes RGB at CRF 0, which decodes back exactly; `crf` sets the quality of lossy
    H.264 (lower is better and larger).
    """

    def __init__(self, path: str | Path, fps: float = DEFAULT_FPS, overwrite: bool = False, *, lossless: bool = False,
                 crf: int = H264_CRF):
        _rate(fps)  # validates fps before anything is created
        self.path = check_output_path(path, overwrite)
        if lossless and self.path.suffix.lower() not in LOSSLESS_FORMATS:
            raise ValueError(f"lossless=True writes H.264 RGB, which needs one of {list(LOSSLESS_FORMATS)}; "
                             f"got {str(self.path)!r}")
        self.overwrite = overwrite
        self.fps = fps
        self.lossless, self.crf = lossless, crf
        self._tmp = _temp_name(self.path)
        self._suffix = self.path.suffix.lower()
        self._container = None
        self._stream = None
        self._size = None  # (H, W) of the first frame
        self._images: list[np.ndarray] = []
        self._warned_range = False  # out-of-range floats are reported once per writer, not once per chunk
        self.frames_written = 0

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _open(self, height: int, width: int):
        import av

        codec, pix_fmt = ("libx264rgb", "rgb24") if self.lossless else VIDEO_FORMATS[self._suffix]
        # bitexact: no random segment ids (mkv, webm) or library version strings, so equal input gives equal bytes
        self._container = av.open(str(self._tmp), mode="w", options={"fflags": "+bitexact"})
        self._stream = self._container.add_stream(codec, rate=_rate(self.fps))
        if self.lossless:
            self._stream.width, self._stream.height = width, height
        else:  # 4:2:0 chroma needs even sizes; odd ones are padded by one edge row/column
            self._stream.width, self._stream.height = width + width % 2, height + height % 2
        self._stream.pix_fmt = pix_fmt
        options = {"threads": str(ENCODER_THREADS), "flags": "+bitexact"}
        if codec.startswith("libx264"):
            options["crf"] = "0" if self.lossless else str(self.crf)
        self._stream.options = options

    def write(self, frames) -> None:
        """Append frames (T, H, W, 3) or one frame (H, W, 3): uint8, or float in [0, 1], numpy or torch, or a list of
        PIL images. Floats outside [0, 1] are clipped, with one warning per writer."""
        import av

        frames = _as_array(frames)
        if frames.dtype != np.uint8 and not self._warned_range:
            self._warned_range = _warn_out_of_range(frames)
        frames = _quantize(frames)
        if self._size is None:
            self._size = frames.shape[1:3]
        elif frames.shape[1:3] != self._size:
            raise ValueError(f"frame size changed from {self._size} to {frames.shape[1:3]}")
        if self._suffix in PILLOW_FORMATS:
            self._images.extend(frames)
            if self._suffix in IMAGE_FORMATS and len(self._images) > 1:
                raise ValueError(f"{str(self.path)!r} is an image: it takes exactly 1 frame; "
                                 "use a video suffix such as .mp4 for more")
            return
        if self._container is None:
            self._open(*self._size)
        pad_h, pad_w = self._stream.height - self._size[0], self._stream.width - self._size[1]
        for frame in frames:
            if pad_h or pad_w:
                frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
            for packet in self._stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                self._container.mux(packet)
        self.frames_written += len(frames)

    def close(self) -> Path:
        """Finish the file and move it onto `path`; returns `path`."""
        if self._size is None:
            self.abort()
            raise ValueError(f"no frames were written to {str(self.path)!r}")
        if self._suffix in PILLOW_FORMATS:
            from PIL import Image

            first, *rest = [Image.fromarray(f) for f in self._images]
            if self._suffix == ".gif":
                durations = _gif_durations(len(self._images), self.fps)
                first.save(self._tmp, save_all=True, append_images=rest, duration=durations, loop=0)
            else:
                first.save(self._tmp)
            self.frames_written = len(self._images)
        else:
            for packet in self._stream.encode():  # flush delayed frames
                self._container.mux(packet)
            self._container.close()
        if self.path.exists() and not self.overwrite:  # appeared while we were writing
            self.abort()
            raise FileExistsError(f"{str(self.path)!r} appeared while writing; pass overwrite=True to replace it")
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the partial file; `path` is left as it was."""
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # noqa: BLE001 - the partial file is deleted anyway
                pass
        self._tmp.unlink(missing_ok=True)


def _rate(fps: float):
    from fractions import Fraction

    if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a finite number > 0, got {fps!r}")
    return Fraction(float(fps)).limit_denominator(1001)


def save_video(frames, path: str | Path, fps: float | None = None, overwrite: bool = False, *,
               lossless: bool = False, crf: int = H264_CRF) -> Path:
    """Write frames (T, H, W, 3) (uint8 or float in [0, 1], numpy or torch, or a list of PIL images), or a
    PipelineOutput holding one video, to `path`; T == 1 with .png is an image.

    fps: default the model's own when given a PipelineOutput, else 16. `lossless` and `crf` are as in `VideoWriter`.
    """
    if hasattr(frames, "frames"):  # a PipelineOutput (duck-typed: this module stays below the pipeline)
        if fps is None:
            fps = getattr(frames, "fps", None)
        if len(frames.frames) != 1:
            raise ValueError(f"save_video writes one video, but the pipeline output holds {len(frames.frames)}; "
                             "pass out.frames[i] to save video i")
        frames = frames.frames[0]
    fps = DEFAULT_FPS if fps is None else fps
    with VideoWriter(path, fps=fps, overwrite=overwrite, lossless=lossless, crf=crf) as writer:
        writer.write(frames)
    return writer.path


def read_video(path: str | Path) -> tuple[np.ndarray, float | None]:
    """Frames uint8 (T, H, W, 3) and frames per second (None for an image file)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {str(path)!r}")
    if path.suffix.lower() in IMAGE_FORMATS:
        from PIL import Image

        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))[None], None
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        rate = stream.average_rate or stream.guessed_rate
        # A gif's delays differ by a centisecond frame to frame, and FFmpeg's average_rate may follow one of them.
        if container.format.name == "gif" and stream.duration:
            rate = len(frames) / (stream.duration * stream.time_base)
    if not frames:
        raise ValueError(f"{str(path)!r} holds no video frames")
    return np.stack(frames), float(rate) if rate else None
