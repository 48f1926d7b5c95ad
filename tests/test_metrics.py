import math

import numpy as np
import pytest
import torch

from vidgen.metrics import DriftMeter, delta_e, drift_report, psnr, srgb_to_lab


def test_psnr_closed_form_for_uint8_float_and_tensors():
    a = np.full((2, 8, 8, 3), 100, np.uint8)
    b = a + np.uint8(5)
    assert psnr(a, b) == pytest.approx(20 * math.log10(255 / 5))
    assert psnr(a / 255, b / 255) == pytest.approx(20 * math.log10(255 / 5))
    x = torch.zeros(3, 4, 4)
    assert psnr(x, x + 0.2, data_range=2.0) == pytest.approx(20 * math.log10(2 / 0.2))
    assert psnr(a, a) == math.inf
    with pytest.raises(ValueError, match="one shape"):
        psnr(a, a[:1])
    with pytest.raises(ValueError, match="data_range"):
        psnr(a, a / 255)


def test_lab_known_values():
    lab = srgb_to_lab(np.array([[255, 255, 255], [0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8))
    np.testing.assert_allclose(lab[0], [100, 0, 0], atol=1e-6)
    np.testing.assert_allclose(lab[1], [0, 0, 0], atol=1e-9)
    np.testing.assert_allclose(lab[2], [53.24, 80.09, 67.20], atol=0.01)
    np.testing.assert_allclose(lab[3], [87.73, -86.18, 83.18], atol=0.01)
    np.testing.assert_allclose(lab[4], [32.30, 79.19, -107.86], atol=0.01)
    gray = srgb_to_lab(np.array([0.5, 0.5, 0.5]))  # neutral: a = b = 0; L from Y = ((0.5+0.055)/1.055)^2.4
    y = ((0.5 + 0.055) / 1.055) ** 2.4
    np.testing.assert_allclose(gray, [116 * y ** (1 / 3) - 16, 0, 0], atol=1e-6)
    assert delta_e(lab[0], lab[1]) == pytest.approx(100.0, abs=1e-6)


def test_drift_report_closed_form():
    # Three 3-frame gray segments; within a segment the level rises by 2/255 per frame, and each segment starts
    # 6/255 above where the previous one ended: seam jump 6/2 = 3.
    levels = [[100, 102, 104], [110, 112, 114], [120, 122, 124]]
    segments = [np.stack([np.full((4, 4, 3), v, np.uint8) for v in seg]) for seg in levels]
    r = drift_report(segments)
    assert r.within_diff == pytest.approx(2 / 255)
    assert r.seam_diff == pytest.approx((6 / 255, 6 / 255))
    assert r.seam_jump == pytest.approx((3.0, 3.0))
    lab = [srgb_to_lab(np.array([[v, v, v] for v in seg], np.uint8)).mean(axis=0) for seg in levels]
    assert r.delta_e[0] == 0.0
    assert r.delta_e[2] == pytest.approx(float(np.linalg.norm(lab[2] - lab[0])))
    assert r.mean_lab[1] == pytest.approx(tuple(lab[1]))
    table = r.to_markdown()
    assert table.count("\n| ") == 3 and "3.00" in table

    # Continuing a video seamlessly: a seam that steps like any frame inside a segment has jump 1.
    ramp = np.arange(12, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8) * 3
    assert drift_report([ramp[:4], ramp[4:8], ramp[8:]]).seam_jump == pytest.approx((1.0, 1.0))


def test_drift_edge_cases_and_streaming():
    still = np.full((3, 2, 2, 3), 0.5)
    assert drift_report([still, still]).seam_jump == (1.0,)
    assert drift_report([still, still + 0.1]).seam_jump == (math.inf,)
    single = drift_report([still])
    assert single.seam_jump == () and math.isnan(single.mean_seam_jump)
    meter = DriftMeter()
    with pytest.raises(ValueError, match="no segments"):
        meter.report()
    meter.add(still)
    with pytest.raises(ValueError, match="earlier segments"):
        meter.add(np.zeros((2, 3, 3, 3)))


def test_drift_meter_in_chunks_and_across_a_restart_equals_whole_segments():
    rng = np.random.default_rng(1)
    segments = [rng.integers(0, 256, (t, 4, 4, 3), dtype=np.uint8) for t in (3, 2, 4)]
    meter = DriftMeter()
    for i, seg in enumerate(segments):
        if i == 2:  # a restart between segments: a fresh meter continues from the saved state
            state, meter = meter.state_dict(), DriftMeter()
            meter.load_state_dict(state)
        for chunk in (seg[:1], seg[1:1], seg[1:]):  # an empty chunk adds nothing
            meter.add_frames(chunk)
        meter.end_segment()
    ours, ref = meter.report(), drift_report(segments)
    assert np.allclose(ours.mean_lab, ref.mean_lab) and ours.seam_diff == pytest.approx(ref.seam_diff)
    assert ours.within_diff == pytest.approx(ref.within_diff)
    with pytest.raises(ValueError, match="without frames"):
        meter.end_segment()
