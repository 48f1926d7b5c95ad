"""What a new user trips over: every bad setting refused before a model loads, with one line naming it, and nothing left
on disk by a refused call; what is silently changed today is refused or stated."""

import math
import warnings

import numpy as np
import pytest
import torch

from tests.tiny_pipeline import tiny_vidgen_pipeline
from vidgen.request import GenerationRequest, Geometry, PipelineConfig


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_vidgen_pipeline().save_pretrained(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture
def no_loading(monkeypatch):
    from vidgen.pipeline import VideoPipeline

    def refuse(*a, **k):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(VideoPipeline, "from_pretrained", refuse)


def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


BAD_GENERATE = [
    (["--fps", "0"], "fps must be > 0, got 0"),
    (["--fps", "nan"], "fps must be a finite number"),
    (["--seed", "99999999999999999999999"], "seed must be in [0, 2**64 - 1]"),
    (["--seed", "-1"], "seed must be in [0, 2**64 - 1]"),
    (["--guidance", "nan"], "guidance_scale must be a finite number, got nan"),
    (["--shift", "inf"], "shift must be a finite number, got inf"),
    (["--shift", "0"], "shift must be > 0"),
    (["--sampler", "ddim"], "unknown sampler 'ddim'"),
    (["--step-cache", "-1"], "threshold"),
]


@pytest.mark.parametrize("args, message", BAD_GENERATE)
def test_generate_refuses_before_loading(model_dir, tmp_path, monkeypatch, capsys, no_loading, args, message):
    from vidgen import cli

    monkeypatch.chdir(tmp_path)
    assert cli.main(["generate", "a red circle", "-o", "clip.mp4", "--model", str(model_dir), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert _files(tmp_path) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch without a usable GPU")
def test_cuda_device_without_cuda_is_one_line(model_dir, tmp_path, monkeypatch, capsys, no_loading):
    from vidgen import cli
    from vidgen.device import check_device

    monkeypatch.chdir(tmp_path)
    assert cli.main(["generate", "a red circle", "-o", "clip.mp4", "--model", str(model_dir), "--device", "cuda"]) == 2
    assert "device 'cuda' asked for, but" in capsys.readouterr().err
    with pytest.raises(ValueError, match="not a device name"):
        check_device("gpu7")


def test_batch_mode_bad_format_creates_no_folder(model_dir, tmp_path, monkeypatch, capsys, no_loading):
    from vidgen import cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.txt").write_text("a red circle\na blue square\n")
    assert cli.main(["generate", "--prompts", "p.txt", "-o", "outdir/", "--format", ".xyz",
                     "--model", str(model_dir)]) == 2
    assert "--format '.xyz' is not a file type" in capsys.readouterr().err
    assert cli.main(["generate", "--prompts", "p.txt", "-o", "outdir/", "--format", ".png",
                     "--model", str(model_dir)]) == 2  # images hold one frame; the model makes 5
    assert "--frames is 5" in capsys.readouterr().err
    assert _files(tmp_path) == ["p.txt"]


def test_long_video_to_an_image_file_leaves_nothing(model_dir, tmp_path, monkeypatch, capsys, no_loading):
    from vidgen import cli

    monkeypatch.chdir(tmp_path)
    for args in (["-o", "l.png"], ["-o", "l.mp4", "--fps", "0"], ["-o", "l.mp4", "--guidance", "nan"],
                 ["-o", "l.mp4", "--seed", str(2**64 - 1)], ["-o", "l.mp4", "--context-noise", "nan"]):
        assert cli.main(["long-video", "a red circle", "--segments", "3", "--model", str(model_dir), *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("vidgen long-video: error: ") and err.count("\n") == 1, err
    assert _files(tmp_path) == []


def test_version(capsys):
    from vidgen import __version__, cli

    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"vidgen {__version__}"


# --- the API: the same checks through GenerationRequest ------------------------------------------------------------


@pytest.mark.parametrize("settings, message", [
    (dict(guidance_scale=float("nan")), "guidance_scale must be a finite number"),
    (dict(shift=float("inf")), "shift must be a finite number"),
    (dict(context_noise=float("nan")), "context_noise must be a finite number"),
    (dict(context_noise=1.0), "context_noise must be a noise level"),
    (dict(seed=2**64), "seed must be in"),
    (dict(seed=1.5), "seed must be a whole number"),
    (dict(seed=2**64 - 3, seeds_used=4), "uses 4 consecutive seeds"),
    (dict(num_frames=10), "nearest valid counts are 9 or 13"),
    (dict(num_frames=True), "num_frames must be a whole number"),
    (dict(height=40), "height=40 is not a positive multiple of 16"),
    (dict(fps=-1), "fps must be > 0"),
    (dict(output_type="video"), "output_type must be one of"),
    (dict(negative_prompt=3), "negative_prompt must be a string"),
])
def test_request_names_the_bad_setting(settings, message):
    with pytest.raises(ValueError, match=message):
        GenerationRequest.resolve(PipelineConfig(num_frames=5, height=32, width=32), **settings)


def test_request_fills_defaults_and_sizes_from_an_image():
    defaults = PipelineConfig(num_frames=5, height=32, width=32, fps=8)
    r = GenerationRequest.resolve(defaults, seed=2**64 - 1)
    assert (r.num_frames, r.height, r.width, r.fps, r.seed) == (5, 32, 32, 8.0, 2**64 - 1)
    assert r.latent_shape(2) == (2, 16, 2, 4, 4)
    assert GenerationRequest.resolve(defaults, image_size=(100, 200)).height == 96  # 200x100 → 192x96
    assert GenerationRequest.resolve(defaults, image_size=(100, 200), height=64).width == 128
    assert 0 <= GenerationRequest.resolve(defaults).seed < 2**63  # drawn when not given
    assert Geometry(latent_channels=4).latent_shape(1, 9, 48, 64) == (1, 4, 3, 6, 8)


def test_far_larger_than_the_model_warns_before_work():
    defaults = PipelineConfig(num_frames=5, height=64, width=64)
    with pytest.warns(UserWarning, match="4096x4096 is 4096x the pixels of this model's own size 64x64"):
        GenerationRequest.resolve(defaults, height=4096, width=4096)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GenerationRequest.resolve(defaults, height=128, width=128)  # 4x: no warning


def test_pipeline_refuses_before_any_work(monkeypatch):
    pipe = tiny_vidgen_pipeline()

    def no_text(*a, **k):
        raise AssertionError("text was encoded before the arguments were checked")

    monkeypatch.setattr(type(pipe.text_encoder), "__call__", no_text)
    for kwargs in (dict(guidance_scale=math.nan), dict(seed=-5), dict(context_noise=math.inf),
                   dict(image=np.full((32, 32, 3), 200.0, np.float32))):
        with pytest.raises(ValueError):
            pipe("a red circle", progress=False, **kwargs)


def test_float_images_outside_unit_range_are_refused():
    from vidgen.pixels import image_to_tensor

    with pytest.raises(ValueError, match=r"image values span \[0, 255\]; expected uint8 in 0..255, or float in "):
        image_to_tensor(np.linspace(0, 255, 16 * 16 * 3, dtype=np.float32).reshape(16, 16, 3))
    assert image_to_tensor(np.full((4, 4, 3), 1.0004, np.float32)).max() == 1  # rounding slack is accepted
    assert torch.equal(image_to_tensor(np.full((4, 4, 3), 255, np.uint8)), torch.ones(1, 3, 1, 4, 4))


def test_resizing_a_conditioning_image_is_stated_once(recwarn):
    pipe = tiny_vidgen_pipeline()
    image = np.random.default_rng(0).random((100, 200, 3), dtype=np.float32)
    out = pipe("a red circle", image=image, num_inference_steps=1, progress=False, seed=0, output_type="latent")
    assert out.frames.shape[-2:] == (96 // 8, 192 // 8)  # 200x100 → 192x96
    notes = [str(w.message) for w in recwarn if "conditioning image" in str(w.message)]
    assert notes == ["the conditioning image is 200x100; the output is 192x96, so the image is scaled"]
    video = np.random.default_rng(1).random((5, 40, 40, 3), dtype=np.float32)
    recwarn.clear()
    pipe("a red circle", video=video, num_frames=9, height=32, width=32, num_inference_steps=1, progress=False,
         seed=0, output_type="latent")
    assert sum("conditioning image" in str(w.message) for w in recwarn) == 1  # five frames, one note


def test_anchor_first_callback_never_sees_a_step_twice():
    pipe = tiny_vidgen_pipeline()
    seen = []
    pipe("a red circle", num_inference_steps=3, anchor_first=True, progress=False, seed=0, output_type="latent",
         callback=seen.append)
    assert [s.i for s in seen] == list(range(6)) and {s.num_steps for s in seen} == {6}
    assert [s.stage for s in seen] == ["anchor"] * 3 + ["clip"] * 3


def test_prompt_warnings_name_unknown_words_and_truncation():
    from tests.tiny_pipeline import tiny_tokenizer, tiny_umt5
    from vidgen.text import TextEncoder

    encoder = TextEncoder(tiny_umt5(), tiny_tokenizer(), max_tokens=8)
    with pytest.warns(UserWarning) as caught:
        encoder(["a red zorblax moves quuxly", "a red circle " * 5])
    messages = [str(w.message) for w in caught]
    assert any("'zorblax', 'quuxly'" in m for m in messages), messages
    assert any("prompt 2 has 16 tokens; the text encoder keeps the first 8" in m for m in messages), messages
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encoder(["a red circle moves left"])


def test_long_video_says_which_segment_and_where_it_resumes(tmp_path, capsys):
    from vidgen.long_video import LongVideoConfig, generate_long_video

    pipe = tiny_vidgen_pipeline()
    cfg = LongVideoConfig(segments=3, frames=5, context_frames=1, height=16, width=16, num_inference_steps=1, seed=3)

    def stop(i):
        if i == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_long_video(pipe, "a red circle", tmp_path / "l.mp4", cfg, on_segment=stop)
    assert "segment 1/3" in capsys.readouterr().err
    generate_long_video(pipe, "a red circle", tmp_path / "l.mp4", cfg, resume=True)
    err = capsys.readouterr().err
    assert "resuming from segment 2/3 (1 done" in err and "segment 3/3" in err and "segment 1/3" not in err
    generate_long_video(pipe, "a red circle", tmp_path / "q.mp4", cfg, progress=False)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("argv", [
    ["generate", "a red circle", "-o", "a.mp4", "--dtype", "fp64"],
    ["generate", "a red circle", "-o", "a.mp4", "--frames"],
    ["long-video", "a red circle", "-o", "l.mp4", "--segments", "2", "--handover", "foo"],
    ["frobnicate"],
])
def test_argument_syntax_errors_are_one_line(tmp_path, monkeypatch, capsys, argv):
    from vidgen import cli

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "error: argument" in err and "--help" in err
    assert _files(tmp_path) == []


def test_a_video_frame_out_of_range_is_refused_before_text_is_encoded(monkeypatch):
    pipe = tiny_vidgen_pipeline()

    def no_text(*a, **k):
        raise AssertionError("text was encoded before the video was checked")

    monkeypatch.setattr(type(pipe.text_encoder), "__call__", no_text)
    video = np.random.default_rng(0).random((9, 32, 32, 3), dtype=np.float32)
    video[5] *= 255  # one of the last five (the context) in 0..255
    with pytest.raises(ValueError, match="expected uint8 in 0..255, or float in"):
        pipe("a red circle", video=video, num_frames=9, progress=False)
