import numpy as np
import pytest
import torch

from tests.tiny_pipeline import tiny_vidgen_pipeline
from vidgen.drift import ColorAnchor
from vidgen.decoding import StreamDecoder
from vidgen.long_video import LongVideoConfig, generate_long_video, prompt_for_segment
from vidgen.metrics import DriftMeter, drift_report
from vidgen.video_io import read_video

SMALL = dict(frames=5, context_frames=1, height=16, width=16, num_inference_steps=1, seed=3)


@pytest.fixture(scope="module")
def pipe():
    return tiny_vidgen_pipeline()


class Recorder:
    """The pipeline, recording the keyword arguments of every call."""

    def __init__(self, pipe):
        self.pipe, self.calls = pipe, []

    def __getattr__(self, name):
        return getattr(self.pipe, name)

    def __call__(self, prompt, **kwargs):
        self.calls.append((prompt, kwargs))
        out = self.pipe(prompt, **kwargs)
        self.calls[-1] += (out.frames,)
        return out


class Interrupt(Exception):
    pass


def test_frame_count_prompts_and_context_per_segment(pipe, tmp_path):
    rec = Recorder(pipe)
    cfg = LongVideoConfig(segments=3, handover="latent", **{**SMALL, "frames": 9, "context_frames": 5})
    result = generate_long_video(rec, ["a red circle", "a blue square"], tmp_path / "long.mp4", cfg, progress=False)
    frames, _ = read_video(result.path)
    assert result.frames_written == len(frames) == 9 + 2 * (9 - 5)  # overlapping frames written once
    assert [c[0] for c in rec.calls] == ["a red circle", "a blue square", "a blue square"]  # last prompt reused
    assert rec.calls[0][1]["context_latents"] is None
    for (_, prev_kw, prev), (_, kw, _) in zip(rec.calls, rec.calls[1:]):  # latent hand-over: the last 2 latents
        assert torch.equal(kw["context_latents"], prev[:, :, -2:])
    assert not (tmp_path / "long.mp4.state").exists()  # the resume state is removed when the video is complete


def test_pixel_handover_reencodes_the_last_written_frames(pipe, tmp_path):
    rec = Recorder(pipe)
    cfg = LongVideoConfig(segments=2, handover="pixel", **{**SMALL, "frames": 9, "context_frames": 5})
    generate_long_video(rec, "a red circle", tmp_path / "long.mp4", cfg, progress=False)
    frames, _ = read_video(tmp_path / "long.mp4")  # lossy, so compare with what was written: the stream decode
    first = torch.cat(list(StreamDecoder(pipe.vae)(rec.calls[0][2])), 1)[0].numpy()  # (9, H, W, 3)
    last5 = torch.from_numpy((np.clip(first[-5:], 0, 1) * 255 + 0.5).astype(np.uint8))
    expected = pipe.vae.encode(last5.permute(3, 0, 1, 2)[None].float() / 127.5 - 1)
    assert torch.equal(rec.calls[1][1]["context_latents"], expected)
    assert len(frames) == 9 + 4


@pytest.mark.parametrize("handover", ["pixel", "latent"])
def test_resume_after_interrupt_gives_the_same_video(pipe, tmp_path, handover):
    cfg = LongVideoConfig(segments=4, handover=handover, color_anchor=True, context_noise=0.05, **SMALL)
    full = generate_long_video(pipe, "a red circle", tmp_path / "full.mp4", cfg, progress=False, drift=True)

    def stop_after_second(i):
        if i == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        generate_long_video(pipe, "a red circle", tmp_path / "resumed.mp4", cfg, progress=False,
                            on_segment=stop_after_second)
    assert not (tmp_path / "resumed.mp4").exists()  # no half-written output under the final name
    state = tmp_path / "resumed.mp4.state"
    assert sorted(p.name for p in state.iterdir()) == [
        "run.json", "segment_0000.frames.gz", "segment_0000.json", "segment_0001.carry.pt",
        "segment_0001.frames.gz", "segment_0001.json"]
    with pytest.raises(FileExistsError, match="resume"):  # an unfinished run is never silently restarted
        generate_long_video(pipe, "a red circle", tmp_path / "resumed.mp4", cfg, progress=False)
    with pytest.raises(ValueError, match="other settings"):
        generate_long_video(pipe, "a blue square", tmp_path / "resumed.mp4", cfg, progress=False, resume=True)
    made = []
    resumed = generate_long_video(pipe, "a red circle", tmp_path / "resumed.mp4", cfg, progress=False, resume=True,
                                  drift=True, on_segment=made.append)
    assert made == [2, 3]  # only the unfinished segments were generated
    a, b = read_video(full.path)[0], read_video(resumed.path)[0]
    assert a.shape == b.shape == (5 + 3 * 4, 16, 16, 3) and np.array_equal(a, b)
    assert resumed.report == full.report


def test_random_seed_is_kept_for_resume(pipe, tmp_path):
    cfg = LongVideoConfig(segments=2, **{**SMALL, "seed": None})
    with pytest.raises(Interrupt):
        generate_long_video(pipe, "a red circle", tmp_path / "a.mp4", cfg, progress=False,
                            on_segment=lambda i: (_ for _ in ()).throw(Interrupt()))
    result = generate_long_video(pipe, "a red circle", tmp_path / "a.mp4", cfg, progress=False, resume=True)
    again = generate_long_video(pipe, "a red circle", tmp_path / "b.mp4",
                                LongVideoConfig(segments=2, **{**SMALL, "seed": result.seed}), progress=False)
    assert np.array_equal(read_video(result.path)[0], read_video(again.path)[0])


def test_stream_decoder_in_pieces_equals_vae_decode(pipe):
    z = torch.randn(1, 4, 4, 2, 2, generator=torch.Generator().manual_seed(0))
    dec = StreamDecoder(pipe.vae)
    pieces = [p[0].numpy() for p in (*dec(z[:, :, :1]), *dec(z[:, :, 1:3]), *dec(z[:, :, 3:]))]
    assert [len(p) for p in pieces] == [1, 4, 4, 4]
    ref = ((pipe.vae.decode(z) + 1) / 2).clamp(0, 1)[0].permute(1, 2, 3, 0).numpy()
    assert np.allclose(np.concatenate(pieces), ref, atol=1e-5)


def test_stream_drift_meter_equals_whole_segment_report():
    rng = np.random.default_rng(0)
    segments = [rng.integers(0, 256, (t, 8, 8, 3), dtype=np.uint8) for t in (5, 4, 4)]
    meter = DriftMeter()
    for seg in segments:
        for chunk in (seg[:1], seg[1:3], seg[3:]):
            meter.add_frames(chunk)
        meter.end_segment()
    ours, ref = meter.report(), drift_report(segments)
    assert np.allclose(ours.mean_lab, ref.mean_lab) and np.allclose(ours.delta_e, ref.delta_e)
    assert np.allclose(ours.seam_jump, ref.seam_jump) and ours.within_diff == pytest.approx(ref.within_diff)


def test_color_anchor_matches_segment_one_statistics():
    rng = np.random.default_rng(0)
    first = rng.random((4, 8, 8, 3)) * 0.5 + 0.25
    drifted = np.clip(first * 0.8 + np.array([0.1, -0.05, 0.0]), 0, 1)  # darker, shifted colours
    anchor = ColorAnchor()
    assert np.array_equal(anchor(first, 0), first)  # segment 1 is the reference, untouched
    anchor.end_segment(0)
    fixed = np.concatenate([anchor(drifted[:2], 1), anchor(drifted[2:], 1)])
    assert np.allclose(fixed[2:].reshape(-1, 3).mean(0), first.reshape(-1, 3).mean(0), atol=0.02)
    assert np.allclose(fixed[2:].reshape(-1, 3).std(0), first.reshape(-1, 3).std(0), atol=0.02)


def test_prompt_reuse_and_bad_config(pipe, tmp_path):
    assert [prompt_for_segment(["a", "b"], i) for i in range(4)] == ["a", "b", "b", "b"]
    with pytest.raises(ValueError, match="segments must be a whole number >= 1, got 0"):
        LongVideoConfig(segments=0)
    with pytest.raises(ValueError, match="handover"):
        LongVideoConfig(segments=2, handover="decode")
    with pytest.raises(ValueError, match="leaves nothing to generate"):
        generate_long_video(pipe, "a", tmp_path / "x.mp4",
                            LongVideoConfig(segments=2, **{**SMALL, "context_frames": 5}), progress=False)
    with pytest.raises(ValueError, match="non-empty list"):
        generate_long_video(pipe, [], tmp_path / "x.mp4", LongVideoConfig(segments=2, **SMALL), progress=False)
    (tmp_path / "x.mp4").write_bytes(b"")
    with pytest.raises(FileExistsError, match="overwrite"):
        generate_long_video(pipe, "a", tmp_path / "x.mp4", LongVideoConfig(segments=2, **SMALL), progress=False)


def test_compare_chaining_table(pipe, tmp_path):
    from vidgen.long_video import compare_chaining, comparison_table, mitigation_variants

    variants = mitigation_variants(context_frames=1)
    chosen = {name: variants[name] for name in ("last frame (baseline)", "latent K=1 + colour anchor")}
    reports = compare_chaining(pipe, "a red circle", LongVideoConfig(segments=2, **SMALL), tmp_path, chosen)
    table = comparison_table(reports)
    assert len(reports) == 2 and all(len(r.delta_e) == 2 and len(r.seam_jump) == 1 for r in reports.values())
    assert "| last frame (baseline) |" in table and "| latent K=1 + colour anchor |" in table


def test_drift_report_of_a_video_file(pipe, tmp_path):
    from vidgen.drift import segment_lengths, video_drift_report

    result = generate_long_video(pipe, "a red circle", tmp_path / "long.mp4", LongVideoConfig(segments=3, **SMALL),
                                 progress=False, drift=True)
    report = video_drift_report(result.path, frames=5, context_frames=1)  # from the (lossy) mp4
    assert len(report.mean_lab) == 3 and len(report.seam_jump) == 2
    assert np.allclose(report.mean_lab, result.report.mean_lab, atol=2.0)
    assert segment_lengths(13, 5, 1) == [5, 4, 4]
    with pytest.raises(ValueError, match="not a chain"):
        segment_lengths(12, 5, 1)
