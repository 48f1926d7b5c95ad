import os

import numpy as np
import pytest
import torch

from vidgen.video_io import VideoWriter, check_output_path, read_video, save_video, to_uint8


def _clip(t=5, h=32, w=48):
    # Smooth gradients move over time: codec-friendly, so lossy round trips stay close.
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    return np.stack([np.stack([x + 0.05 * i, y, 0.5 + 0 * x], -1) for i in range(t)]).clip(0, 1).astype(np.float32)


@pytest.mark.parametrize("suffix", [".mp4", ".webm", ".gif"])
def test_video_round_trip(tmp_path, suffix):
    frames = _clip()
    path = save_video(frames, tmp_path / f"clip{suffix}", fps=16)
    back, fps = read_video(path)
    assert back.shape == (5, 32, 48, 3) and back.dtype == np.uint8
    assert np.abs(back.astype(float) - to_uint8(frames).astype(float)).mean() < 8
    assert fps == pytest.approx(16, rel=0.05)
    assert [p.name for p in tmp_path.iterdir()] == [f"clip{suffix}"]  # no temp file left behind


def test_png_is_a_single_frame_and_exact(tmp_path):
    frame = torch.rand(1, 16, 16, 3)
    back, fps = read_video(save_video(frame, tmp_path / "img.png"))
    assert fps is None and np.array_equal(back, to_uint8(frame))
    with pytest.raises(ValueError, match="exactly 1 frame"):
        save_video(_clip(t=2), tmp_path / "two.png")
    assert not (tmp_path / "two.png").exists()


def test_lossless_h264_decodes_exactly_at_any_size(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (3, 15, 17, 3), dtype=np.uint8)  # noise, odd sizes
    back, _ = read_video(save_video(frames, tmp_path / "exact.mp4", lossless=True))
    assert np.array_equal(back, frames)
    with VideoWriter(tmp_path / "chunks.mkv", lossless=True) as writer:
        writer.write(frames[:1])
        writer.write(frames[1:])
    assert np.array_equal(read_video(tmp_path / "chunks.mkv")[0], frames)
    with pytest.raises(ValueError, match="lossless"):
        save_video(frames, tmp_path / "clip.webm", lossless=True)


def test_refuses_to_overwrite_unless_asked(tmp_path):
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="overwrite"):
        save_video(_clip(), path)
    assert path.read_bytes() == b"precious"
    save_video(_clip(), path, overwrite=True)
    assert read_video(path)[0].shape[0] == 5


def test_incremental_writer_and_failure_leaves_nothing(tmp_path):
    frames = to_uint8(_clip(t=9))
    with VideoWriter(tmp_path / "inc.mp4", fps=8) as w:
        w.write(frames[:1])
        w.write(frames[1:5])
        w.write(frames[5:])
    assert read_video(tmp_path / "inc.mp4")[0].shape[0] == 9
    with pytest.raises(RuntimeError):
        with VideoWriter(tmp_path / "broken.mp4") as w:
            w.write(frames[:2])
            raise RuntimeError("decoder crashed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inc.mp4"]


def test_bad_paths_and_frames(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_output_path(tmp_path / "file" / "clip.mp4")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_output_path(tmp_path / "nope" / "clip.mp4")
    with pytest.raises(ValueError, match="unknown file type"):
        check_output_path(tmp_path / "clip.avi2")
    if os.geteuid() != 0:  # root may write anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(PermissionError, match="not writable"):
            check_output_path(ro / "clip.mp4")
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        to_uint8(np.zeros((2, 3, 8, 8)))
    with pytest.raises(FileNotFoundError):
        read_video(tmp_path / "missing.mp4")
