"""Drift of chained long videos, measured and mitigated, one decoded chunk at a time (memory independent of length).

`video_drift_report` builds the `metrics.DriftReport` (per-segment mean Lab colour, its CIE76 change from
segment 1, seam jumps) of a chained video file with `metrics.DriftMeter`, frame by frame, so a long video never has to
be held whole. `ColorAnchor` matches each later segment's per-channel RGB mean and standard deviation to segment 1's —
a cheap correction for the slow colour drift of chaining; in pixel hand-over the corrected frames are also the next segment's context, so the drift
cannot accumulate through the context.
"""

from __future__ import annotations

import numpy as np

from vidgen.metrics import DriftMeter, DriftReport


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
    meter, seg, left = DriftMeter(), 0, lengths[0]
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            meter.add_frames(frame.to_ndarray(format="rgb24")[None])
            left -= 1
            if left == 0:
                meter.end_segment()
                seg += 1
                left = lengths[seg] if seg < len(lengths) else 0
    return meter.report()


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
