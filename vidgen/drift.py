"""Drift of chained long videos, measured and mitigated, one decoded chunk at a time (memory independent of length).

`StreamDriftMeter` builds the `metrics.DriftReport` of issue 5 (per-segment mean Lab colour, its CIE76 change from
segment 1, seam jumps) from chunks of frames, so a long video never has to be held whole. `ColorAnchor` matches
each later segment's per-channel RGB mean and standard deviation to segment 1's — a cheap correction for the slow
colour drift of chaining; in pixel hand-over the corrected frames are also the next segment's context, so the drift
cannot accumulate through the context.
"""

from __future__ import annotations

import math

import numpy as np

from vidgen.metrics import DriftReport, delta_e, srgb_to_lab


class StreamDriftMeter:
    """Accumulates a DriftReport from uint8 chunks (t, H, W, 3); `end_segment()` closes each segment.

    Equal to `metrics.drift_report` over the same segments (tests/test_long_video.py checks it).
    """

    def __init__(self):
        self.labs: list[list[float]] = []
        self.seams: list[float] = []
        self.within_sum = 0.0
        self.within_pairs = 0
        self._lab_sum = np.zeros(3)
        self._pixels = 0
        self._last: np.ndarray | None = None  # the previous frame, uint8 (H, W, 3)
        self._new_segment = True

    def add(self, chunk: np.ndarray) -> None:
        """The next frames of the current segment, uint8 (t, H, W, 3)."""
        if chunk.dtype != np.uint8 or chunk.ndim != 4 or chunk.shape[-1] != 3:
            raise ValueError(f"expected uint8 frames (t, H, W, 3), got {chunk.dtype} {chunk.shape}")
        if len(chunk) == 0:
            return
        self._lab_sum += srgb_to_lab(chunk).reshape(-1, 3).sum(axis=0)
        self._pixels += chunk.shape[0] * chunk.shape[1] * chunk.shape[2]
        frames = chunk.astype(np.float64) / 255.0
        if self._last is not None:
            step = float(np.abs(frames[0] - self._last.astype(np.float64) / 255.0).mean())
            if self._new_segment:
                self.seams.append(step)
            else:
                self.within_sum += step
                self.within_pairs += 1
        if len(frames) > 1:
            self.within_sum += float(np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3)).sum())
            self.within_pairs += len(frames) - 1
        self._last = chunk[-1].copy()
        self._new_segment = False

    def end_segment(self) -> None:
        if self._pixels == 0:
            raise ValueError("a segment ended without frames")
        self.labs.append((self._lab_sum / self._pixels).tolist())
        self._lab_sum, self._pixels, self._new_segment = np.zeros(3), 0, True

    def report(self) -> DriftReport:
        if not self.labs:
            raise ValueError("no finished segments; a drift report needs at least one")
        within = self.within_sum / self.within_pairs if self.within_pairs else math.nan
        labs = tuple(tuple(lab) for lab in self.labs)
        return DriftReport(mean_lab=labs, delta_e=tuple(delta_e(lab, labs[0]) for lab in labs),
                           seam_diff=tuple(self.seams), within_diff=within,
                           seam_jump=tuple(_jump(s, within) for s in self.seams))

    def state_dict(self) -> dict:
        """Everything needed to continue measuring after a restart (between segments)."""
        return {"labs": self.labs, "seams": self.seams, "within_sum": self.within_sum,
                "within_pairs": self.within_pairs, "last": self._last}

    def load_state_dict(self, state: dict) -> None:
        self.labs, self.seams = [list(v) for v in state["labs"]], list(state["seams"])
        self.within_sum, self.within_pairs, self._last = state["within_sum"], state["within_pairs"], state["last"]
        self._new_segment = True


def segment_lengths(total_frames: int, frames: int, context_frames: int) -> list[int]:
    """Frames each segment of a chained video wrote: `frames` for the first, `frames − context_frames` after."""
    step = frames - context_frames
    if step < 1 or total_frames < frames or (total_frames - frames) % step:
        raise ValueError(f"{total_frames} frames is not a chain of {frames}-frame segments continuing "
                         f"{context_frames} frame(s) (expected {frames} + n·{step})")
    return [frames] + [step] * ((total_frames - frames) // step)


def video_drift_report(path, frames: int, context_frames: int) -> DriftReport:
    """The DriftReport of a chained video file, read frame by frame (constant memory); `frames` and
    `context_frames` are the settings it was made with (segment 1 wrote `frames`, later ones `frames − K`)."""
    import av

    with av.open(str(path)) as container:
        total = container.streams.video[0].frames
    if not total:  # containers without a frame count: count by decoding
        with av.open(str(path)) as container:
            total = sum(1 for _ in container.decode(video=0))
    lengths = segment_lengths(total, frames, context_frames)
    meter, seg, left = StreamDriftMeter(), 0, lengths[0]
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            meter.add(frame.to_ndarray(format="rgb24")[None])
            left -= 1
            if left == 0:
                meter.end_segment()
                seg += 1
                left = lengths[seg] if seg < len(lengths) else 0
    return meter.report()


def _jump(seam: float, within: float) -> float:
    # The same rule as metrics.DriftMeter: no motion inside segments makes any visible seam an infinite jump.
    if math.isnan(within):
        return math.nan
    if within == 0.0:
        return 1.0 if seam == 0.0 else math.inf
    return seam / within


class ColorAnchor:
    """Per-channel RGB mean/std matching of later segments to segment 1, chunk by chunk.

    Segment 1 only sets the reference. In a later segment each chunk is mapped by x' = (x − μ)/s·s₁ + μ₁ with μ, s
    the running statistics of that segment so far (this chunk included), so frames are written as they are decoded.
    """

    def __init__(self):
        self.reference: np.ndarray | None = None  # (2, 3): mean and std of segment 1
        self._sums = np.zeros((3, 3))  # rows: count, Σx, Σx² per channel

    def __call__(self, chunk: np.ndarray, segment: int) -> np.ndarray:
        """Float frames (t, H, W, 3) in [0, 1] of `segment` (0-based) → corrected frames, same shape."""
        x = chunk.astype(np.float64).reshape(-1, 3)
        self._sums += np.stack([np.full(3, len(x)), x.sum(0), (x * x).sum(0)])
        if segment == 0:
            return chunk
        if self.reference is None:
            raise ValueError("ColorAnchor: segment 1 must be seen (and closed) before later segments")
        mean, std = self._stats()
        ref_mean, ref_std = self.reference
        out = (chunk - mean) / np.maximum(std, 1e-3) * ref_std + ref_mean
        return np.clip(out, 0.0, 1.0).astype(chunk.dtype)

    def end_segment(self, segment: int) -> None:
        if segment == 0 and self._sums[0, 0] > 0:
            self.reference = np.stack(self._stats())
        self._sums = np.zeros((3, 3))

    def _stats(self) -> tuple[np.ndarray, np.ndarray]:
        n, s, s2 = self._sums
        mean = s / n
        return mean, np.sqrt(np.maximum(s2 / n - mean * mean, 0.0))

    def state_dict(self) -> dict:
        return {"reference": self.reference}

    def load_state_dict(self, state: dict) -> None:
        self.reference, self._sums = state["reference"], np.zeros((3, 3))
