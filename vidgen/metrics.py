"""Image and video metrics: PSNR, sRGB → CIE Lab, and the long-video drift report.

Frames are numpy arrays or torch tensors `(..., H, W, 3)`: uint8, or float in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np

# sRGB (linear) → CIE XYZ for the D65 white point (IEC 61966-2-1).
_SRGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
# The D65 white point is the image of sRGB white, so white maps to exactly L = 100, a = b = 0 (≈ 0.95047, 1, 1.08883).
D65_WHITE = tuple(float(v) for v in _SRGB_TO_XYZ.sum(axis=1))
_LAB_EPS = (6 / 29) ** 3  # below this, CIE's cube root is replaced by a line to avoid an infinite slope at 0


def psnr(a, b, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB over whole arrays; inf when they are equal.

    `data_range` defaults to 255 for integer inputs and 1.0 for floats (pass 2.0 for tensors in [-1, 1]).
    """
    x, y = _numpy(a), _numpy(b)
    if x.shape != y.shape:
        raise ValueError(f"psnr needs arrays of one shape, got {x.shape} and {y.shape}")
    if data_range is None:
        ints = np.issubdtype(x.dtype, np.integer), np.issubdtype(y.dtype, np.integer)
        if ints[0] != ints[1]:
            raise ValueError(f"psnr got one integer and one float array ({x.dtype}, {y.dtype}); "
                             "convert one of them or pass data_range")
        data_range = 255.0 if ints[0] else 1.0
    mse = float(np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def srgb_to_lab(rgb) -> np.ndarray:
    """CIE L*a*b* (D65) of sRGB colours (..., 3): uint8, or float in [0, 1]. Returns float64 (..., 3)."""
    c = _unit_float(rgb)
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _SRGB_TO_XYZ.T / np.asarray(D65_WHITE)
    f = np.where(xyz > _LAB_EPS, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
    return np.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def delta_e(lab1, lab2) -> np.ndarray | float:
    """CIE76 colour difference: the Euclidean distance in Lab (≈ 2.3 is a just-noticeable difference)."""
    d = np.linalg.norm(np.asarray(lab1, dtype=np.float64) - np.asarray(lab2, dtype=np.float64), axis=-1)
    return float(d) if d.ndim == 0 else d


@dataclass(frozen=True)
class DriftReport:
    """Per-segment colour drift and seam jumps of a chained long video.

    mean_lab[i]: the mean per-pixel Lab colour of segment i; delta_e[i]: its CIE76 distance from segment 0's.
    seam_diff[j]: mean absolute difference (in [0, 1] units) between the last frame of segment j and the first of
    segment j+1; within_diff: the same between consecutive frames inside segments, averaged over all such pairs;
    seam_jump[j] = seam_diff[j] / within_diff (1 means a seam looks like any other frame step).
    """

    mean_lab: tuple[tuple[float, float, float], ...]
    delta_e: tuple[float, ...]
    seam_diff: tuple[float, ...]
    within_diff: float
    seam_jump: tuple[float, ...]

    @property
    def max_delta_e(self) -> float:
        return max(self.delta_e)

    @property
    def mean_seam_jump(self) -> float:
        return float(np.mean(self.seam_jump)) if self.seam_jump else math.nan

    @property
    def max_seam_jump(self) -> float:
        return max(self.seam_jump) if self.seam_jump else math.nan

    def to_markdown(self) -> str:
        rows = ["| segment | L | a | b | ΔE vs segment 1 | seam jump into segment |",
                "|---:|---:|---:|---:|---:|---:|"]
        for i, ((l, a, b), de) in enumerate(zip(self.mean_lab, self.delta_e)):
            jump = f"{self.seam_jump[i - 1]:.2f}" if i > 0 else "–"
            rows.append(f"| {i + 1} | {l:.2f} | {a:.2f} | {b:.2f} | {de:.2f} | {jump} |")
        rows.append("")
        rows.append(
            f"Max ΔE {self.max_delta_e:.2f}; seam jump mean {self.mean_seam_jump:.2f}, max {self.max_seam_jump:.2f} "
            f"(within-segment frame difference {self.within_diff:.4f})."
        )
        return "\n".join(rows)


class DriftMeter:
    """Accumulates a `DriftReport` from frames as they come, keeping only running sums and the previous frame, so a
    streamed long video is measured in constant memory.

    Either whole segments (`add`), or chunks of the current segment (`add_frames`) closed by `end_segment()`.
    """

    def __init__(self):
        self._labs: list[tuple[float, float, float]] = []
        self._seams: list[float] = []
        self._within_sum = 0.0
        self._within_pairs = 0
        self._lab_sum = np.zeros(3)  # Σ Lab over the pixels of the open segment
        self._pixels = 0
        self._last: np.ndarray | None = None  # the previous frame (H, W, 3), uint8 or float in [0, 1] as given
        self._new_segment = True

    def add(self, frames) -> None:
        """Add the next whole segment, frames (T, H, W, 3) uint8 or float in [0, 1]; T = 1 is allowed."""
        shape = _numpy(frames).shape
        if len(shape) != 4 or shape[-1] != 3 or shape[0] < 1:
            raise ValueError(f"a segment must be frames (T, H, W, 3) with T >= 1, got shape {shape}")
        self.add_frames(frames)
        self.end_segment()

    def add_frames(self, frames) -> None:
        """Add the next frames (t, H, W, 3) of the open segment, uint8 or float in [0, 1]; t = 0 does nothing."""
        given = _numpy(frames)
        seg = _unit_float(given)
        if seg.ndim != 4 or seg.shape[-1] != 3:
            raise ValueError(f"frames must be (T, H, W, 3), got shape {seg.shape}")
        if len(seg) == 0:
            return
        if self._last is not None and self._last.shape != seg.shape[1:]:
            earlier = "earlier segments" if self._new_segment else "earlier frames of this segment"
            raise ValueError(f"segment frames are {seg.shape[1:]}, but {earlier} had {self._last.shape}")
        self._lab_sum += srgb_to_lab(seg).reshape(-1, 3).sum(axis=0)
        self._pixels += seg.shape[0] * seg.shape[1] * seg.shape[2]
        if self._last is not None:
            step = float(np.abs(seg[0] - _unit_float(self._last)).mean())
            if self._new_segment:
                self._seams.append(step)
            else:
                self._within_sum += step
                self._within_pairs += 1
        if len(seg) > 1:
            self._within_sum += float(np.abs(np.diff(seg, axis=0)).mean(axis=(1, 2, 3)).sum())
            self._within_pairs += len(seg) - 1
        # uint8 is kept as it came: the resume state of a long video stays 8× smaller than float64
        self._last = (given if given.dtype == np.uint8 else seg)[-1].copy()
        self._new_segment = False

    def end_segment(self) -> None:
        """Close the open segment (given by `add_frames`)."""
        if self._pixels == 0:
            raise ValueError("a segment ended without frames")
        self._labs.append(tuple(float(v) for v in self._lab_sum / self._pixels))
        self._lab_sum, self._pixels, self._new_segment = np.zeros(3), 0, True

    def report(self) -> DriftReport:
        """The report of the closed segments."""
        if not self._labs:
            raise ValueError("no segments were added; a drift report needs at least one segment")
        first = self._labs[0]
        within = self._within_sum / self._within_pairs if self._within_pairs else math.nan
        return DriftReport(
            mean_lab=tuple(self._labs),
            delta_e=tuple(delta_e(lab, first) for lab in self._labs),
            seam_diff=tuple(self._seams),
            within_diff=within,
            seam_jump=tuple(_ratio(s, within) for s in self._seams),
        )

    def state_dict(self) -> dict:
        """Everything needed to continue measuring after a restart (taken between segments)."""
        if self._pixels:
            raise ValueError("state_dict() is taken between segments; call end_segment() first")
        return {"labs": [list(lab) for lab in self._labs], "seams": list(self._seams),
                "within_sum": self._within_sum, "within_pairs": self._within_pairs, "last": self._last}

    def load_state_dict(self, state: dict) -> None:
        self.__init__()
        self._labs = [tuple(float(v) for v in lab) for lab in state["labs"]]
        self._seams = [float(s) for s in state["seams"]]
        self._within_sum, self._within_pairs = state["within_sum"], state["within_pairs"]
        self._last = None if state["last"] is None else _numpy(state["last"])


def drift_report(segments: Iterable) -> DriftReport:
    """The `DriftReport` of segments, each frames (T, H, W, 3) uint8 or float in [0, 1], in playback order."""
    meter = DriftMeter()
    for seg in segments:
        meter.add(seg)
    return meter.report()


def _ratio(seam: float, within: float) -> float:
    # A video that does not move inside its segments has no scale to compare against: a seam that changes nothing is
    # then unremarkable (1), any change is an infinite jump. Without any within-segment pair the ratio is unknown.
    if math.isnan(within):
        return math.nan
    if within == 0.0:
        return 1.0 if seam == 0.0 else math.inf
    return seam / within


def _numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor; bf16 has no numpy dtype
        x = x.detach().cpu()
        if x.is_floating_point():
            x = x.double()
        x = x.numpy()
    return np.asarray(x)


def _unit_float(x) -> np.ndarray:
    """uint8 → /255; float stays (expected in [0, 1]); anything else is an error."""
    arr = _numpy(x)
    if arr.dtype == np.uint8:
        return arr.astype(np.float64) / 255.0
    if np.issubdtype(arr.dtype, np.floating):
        return arr.astype(np.float64)
    raise ValueError(f"expected uint8 colours or floats in [0, 1], got dtype {arr.dtype}")
