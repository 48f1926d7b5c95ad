import os
import warnings

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


def _moving_clip(t=17, h=128, w=128):
    # Texture that moves every frame, so the encoders have real work (and Pillow merges no gif frames).
    y, x = np.mgrid[0:h, 0:w] / 32
    return np.stack([np.stack([np.sin(3 * x + 0.4 * i) * 0.5 + 0.5, (y + 0.05 * i) % 1,
                               np.cos(5 * x * y + 0.3 * i) * 0.5 + 0.5], -1) for i in range(t)]).astype(np.float32)


DETERMINISTIC_SUFFIXES = (".mp4", ".mkv", ".webm", ".gif", ".png")


def _encode_everything(folder, index):
    # Odd workers run on one CPU: left to choose, x264 and libvpx would pick another thread count there (other bytes).
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    if index % 2 and len(cpus) > 1:
        os.sched_setaffinity(0, {min(cpus)})
    clip = _moving_clip()  # 128 x 128: big enough for x264 to use several threads when it may
    small = {".gif": clip[:, :64, :64], ".png": clip[:1]}  # Pillow's gif quantizer is slow; png holds one frame
    for suffix in DETERMINISTIC_SUFFIXES:
        save_video(small.get(suffix, clip), os.path.join(folder, f"{index}{suffix}"), fps=16)


def test_concurrent_encodes_give_identical_bytes(tmp_path):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    runs = 6
    # fork: the workers start without importing torch again
    with ProcessPoolExecutor(runs, mp_context=multiprocessing.get_context("fork")) as pool:
        list(pool.map(_encode_everything, [str(tmp_path)] * runs, range(runs)))
    for suffix in DETERMINISTIC_SUFFIXES:
        files = {(tmp_path / f"{i}{suffix}").read_bytes() for i in range(runs)}
        assert len(files) == 1, f"{len(files)} different {suffix} files from {runs} runs of the same clip"


def test_float_values_outside_unit_range_warn_once_and_are_clipped(tmp_path):
    frames = _clip(t=4)
    frames[0, 0, 0] = [-0.25, 1.5, 0.5]
    said = r"2 of 18432 frame values lie outside \[0, 1\] \(min -0\.25, max 1\.5\); they are clipped to \[0, 1\]"
    with pytest.warns(UserWarning, match=said) as rec:
        path = save_video(frames, tmp_path / "clip.mp4", lossless=True)
    assert len(rec) == 1
    assert np.array_equal(read_video(path)[0], to_uint8(frames.clip(0, 1)))
    with pytest.warns(UserWarning, match="clipped") as rec:
        with VideoWriter(tmp_path / "chunks.mp4") as writer:
            for chunk in (frames, frames + 1, frames):
                writer.write(chunk)
    assert len(rec) == 1  # once per writer, not once per chunk
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        save_video(_clip(t=2), tmp_path / "in_range.mp4")
        save_video(to_uint8(_clip(t=2)), tmp_path / "uint8.mp4")
        save_video(torch.ones(1, 8, 8, 3), tmp_path / "ones.png")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_frames_are_refused(tmp_path, bad):
    frames = _clip(t=2)
    frames[1, 3, 4, 0] = bad
    with pytest.raises(ValueError, match=r"1 NaN or infinite values of 9216; expected finite values in \[0, 1\]"):
        save_video(frames, tmp_path / "clip.mp4")
    assert list(tmp_path.iterdir()) == []


def test_save_video_takes_a_pipeline_output(tmp_path):
    from dataclasses import dataclass
    from typing import Any

    from PIL import Image

    @dataclass
    class Output:  # what save_video relies on of vidgen.pipeline.PipelineOutput
        frames: Any
        fps: float | None = None

    frames = _clip(t=6)[None]  # (B=1, T, H, W, 3)
    assert read_video(save_video(Output(frames, fps=8), tmp_path / "model.mp4"))[1] == pytest.approx(8)
    assert read_video(save_video(Output(frames, fps=8), tmp_path / "asked.mp4", fps=12))[1] == pytest.approx(12)
    assert read_video(save_video(Output(torch.from_numpy(frames)), tmp_path / "pt.mp4"))[1] == pytest.approx(16)
    pil = [[Image.fromarray(f) for f in to_uint8(frames[0])]]
    back, _ = read_video(save_video(Output(pil), tmp_path / "pil.mp4", lossless=True))
    assert np.array_equal(back, to_uint8(frames[0])) and np.array_equal(to_uint8(pil[0]), back)
    with pytest.raises(ValueError, match=r"holds 2; pass out\.frames\[i\]"):
        save_video(Output(np.concatenate([frames, frames])), tmp_path / "two.mp4")
    assert not (tmp_path / "two.mp4").exists()


@pytest.mark.parametrize("fps", [8, 12, 15, 16, 24, 30])
def test_gif_frame_delays_average_to_the_fps(tmp_path, fps):
    from PIL import Image

    frames = _moving_clip(t=17, h=16, w=16)
    path = save_video(frames, tmp_path / "clip.gif", fps=fps)
    with Image.open(path) as im:
        delays = []
        for i in range(im.n_frames):
            im.seek(i)
            delays.append(im.info["duration"])
    assert len(delays) == 17 and all(d % 10 == 0 for d in delays)  # GIF stores whole centiseconds
    assert abs(sum(delays) - 17 * 1000 / fps) <= 10
    assert read_video(path)[1] == pytest.approx(fps, rel=0.02)
