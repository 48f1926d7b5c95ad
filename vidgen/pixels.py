"""Pixel conventions in one place: what users hand in and get back is [0, 1] (or uint8), the VAE works in [-1, 1].

Images given as conditioning (a first frame, a video to continue) are scaled to cover the target height × width,
aspect ratio kept, and the overflow is cropped equally on both sides; the change is stated once as a warning. Values
outside the accepted ranges are refused, never clipped: a 0..255 float image would otherwise turn white.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

RANGE_SLACK = 1e-3  # float images a hair outside [0, 1] (rounding in a user's own processing) are accepted
ACCEPTED = "uint8 in 0..255, or float in [0, 1]"


def to_signed(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] → [-1, 1] (the VAE's input range)."""
    return x * 2 - 1


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] (the VAE's output) → float32 in [0, 1], clamped: a decoder may overshoot slightly."""
    return ((x.float() + 1) / 2).clamp(0, 1)


def uint8_to_signed(frames: np.ndarray) -> torch.Tensor:
    """uint8 frames (T, H, W, 3) → pixels (1, 3, T, H, W) in [-1, 1], float32."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2)[None].float() / 127.5 - 1


def read_image_file(path: str | Path):
    """An image file → an RGB PIL image; FileNotFoundError / ValueError naming the file when it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file {str(path)!r} does not exist")
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"image file {str(path)!r} is not an image Pillow can read ({e})") from None


def image_to_unit(image) -> torch.Tensor:
    """An image (file path, PIL image, np (H, W, 3) or tensor (3, H, W); uint8, or float in [0, 1]) → float32
    (3, H, W) in [0, 1]. Float values outside [0, 1] and non-finite values are refused."""
    if isinstance(image, (str, Path)):
        image = read_image_file(image)
    if hasattr(image, "convert"):  # PIL, any mode
        image = np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image array must be (H, W, 3), got {image.shape}")
        image = torch.from_numpy(np.array(image)).permute(2, 0, 1)  # a copy: arrays of PIL images are read-only
    if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.shape[0] != 3:
        raise ValueError("image must be a PIL image, a numpy array (H, W, 3) or a tensor (3, H, W); got "
                         f"{type(image).__name__} {tuple(getattr(image, 'shape', ()))}")
    if image.dtype == torch.uint8:
        return image.float() / 255
    if not image.is_floating_point():
        raise ValueError(f"image has dtype {image.dtype}; expected {ACCEPTED}")
    x = image.float()
    if not torch.isfinite(x).all():
        raise ValueError(f"image has non-finite values (NaN or inf); expected {ACCEPTED}")
    lo, hi = float(x.min()), float(x.max())
    if lo < -RANGE_SLACK or hi > 1 + RANGE_SLACK:
        raise ValueError(f"image values span [{lo:g}, {hi:g}]; expected {ACCEPTED} (divide 0..255 floats by 255)")
    return x.clamp(0, 1)


def image_to_tensor(image, height: int | None = None, width: int | None = None, *,
                    notice: bool = True) -> torch.Tensor:
    """An image → pixels (1, 3, 1, H', W') in [-1, 1]; with a target size, scaled to cover it and centre-cropped.
    `notice`: warn when the image's size or aspect ratio is changed."""
    x = image_to_unit(image)[None]  # (1, 3, H, W)
    h, w = x.shape[-2:]
    if height is not None and width is not None and (h, w) != (height, width):
        if notice:
            warnings.warn(resize_note(h, w, height, width), stacklevel=2)
        scale = max(height / h, width / w)  # cover the target, then crop the overflow equally on both sides
        new_h, new_w = max(height, round(h * scale)), max(width, round(w * scale))
        x = torch.nn.functional.interpolate(x, size=(new_h, new_w), mode="bilinear", antialias=True,
                                            align_corners=False)
        top, left = (new_h - height) // 2, (new_w - width) // 2
        x = x[:, :, top:top + height, left:left + width]
    return to_signed(x.clamp(0, 1))[:, :, None]


def resize_note(h: int, w: int, height: int, width: int) -> str:
    """What happens to an h × w conditioning image for a height × width output, in one sentence."""
    how = "scaled" if h * width == w * height else "scaled to cover it and centre-cropped"
    return f"the conditioning image is {w}x{h}; the output is {width}x{height}, so the image is {how}"


def image_size(image) -> tuple[int, int]:
    """(height, width) of an image in any form `image_to_unit` takes."""
    return tuple(image_to_unit(image).shape[-2:])

