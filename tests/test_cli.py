"""The command line as a new user runs it: `python -m vidgen ...` in a fresh process on a tiny saved pipeline."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.tiny_pipeline import tiny_vidgen_pipeline
from vidgen.video_io import read_video, save_video

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_vidgen_pipeline().save_pretrained(tmp_path_factory.mktemp("models") / "tiny")


def vidgen(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "vidgen", *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_generate_clip_and_image(model_dir, tmp_path):
    run = vidgen("generate", "a red circle moves left", "-o", "clip.mp4", "--model", model_dir, "--seed", 3,
                 "--steps", 2, "--guidance", 2.0, "--sampler", "dpm++2m", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "wrote clip.mp4" in run.stdout and "seed 3" in run.stdout
    for stage in ("load", "encode text", "denoise", "decode", "write"):
        assert f"{stage} " in run.stdout
    frames, fps = read_video(tmp_path / "clip.mp4")
    assert frames.shape == (5, 32, 32, 3) and fps == 16
    run = vidgen("generate", "a red circle moves left", "-o", "anchored.mp4", "--model", model_dir, "--seed", 3,
                 "--steps", 2, "--guidance", 2.0, "--sampler", "dpm++2m", "--anchor-first", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert not np.array_equal(read_video(tmp_path / "anchored.mp4")[0], frames)  # the model's default is off

    save_video(np.full((40, 40, 3), 0.5, np.float32), tmp_path / "first.png")
    run = vidgen("generate", "a blue square", "-o", "img.png", "--model", model_dir, "--frames", 1,
                 "--image", "first.png", "--no-progress", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    # --no-progress: no bars; the one line says what happens to the 40x40 first frame
    assert run.stderr == ("vidgen generate: warning: the conditioning image is 40x40; the output is 32x32, so the "
                          "image is scaled\n")
    assert read_video(tmp_path / "img.png")[0].shape == (1, 32, 32, 3)  # 40 rounded down to a multiple of 16


@pytest.mark.parametrize("args, message", [
    (["--frames", "10"], "nearest valid counts are 9 or 13"),
    (["--height", "40"], "height=40 is not a positive multiple of 16"),
    (["--guidance", "-2"], "guidance_scale must be >= 0"),
    (["--steps", "0"], "num_inference_steps must be >= 1"),
    (["-o", "no/such/folder/clip.mp4"], "does not exist"),
    (["-o", "clip.png"], "is an image file but --frames is 5"),
    (["--image", "missing.png"], "does not exist"),
])
def test_bad_arguments_fail_fast_with_clear_errors(model_dir, tmp_path, monkeypatch, capsys, args, message):
    from vidgen import cli
    from vidgen.pipeline import VideoPipeline

    def no_loading(*a, **k):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(VideoPipeline, "from_pretrained", no_loading)
    argv = ["generate", "a red circle", "--model", str(model_dir)] + ([] if "-o" in args else ["-o", "clip.mp4"])
    assert cli.main(argv + args) == 2
    assert message in capsys.readouterr().err


def test_bad_arguments_in_a_fresh_process(model_dir, tmp_path):
    run = vidgen("generate", "a red circle", "-o", "clip.mp4", "--model", model_dir, "--frames", 10, cwd=tmp_path)
    assert run.returncode == 2 and "nearest valid counts are 9 or 13" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr and not (tmp_path / "clip.mp4").exists()


def test_existing_output_and_non_model_folder(model_dir, tmp_path, monkeypatch, capsys):
    from vidgen import cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "clip.mp4").write_bytes(b"keep me")
    assert cli.main(["generate", "a red circle", "-o", "clip.mp4", "--model", str(model_dir)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "clip.mp4").read_bytes() == b"keep me"
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "model_index.json").write_text('{"_class_name": "WanPipeline"}')
    assert cli.main(["generate", "a red circle", "-o", "new.mp4", "--model", "fake"]) == 2
    assert "transformer/config.json is missing" in capsys.readouterr().err


def test_train_subcommand_is_registered(capsys):
    from vidgen.cli import main

    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0 and "--config" in capsys.readouterr().out


def test_train_without_the_trainer_installed_is_one_line(monkeypatch, capsys):
    from vidgen.cli import main

    monkeypatch.setitem(sys.modules, "vidgen.train.cli", None)  # as an installation without vidgen.train
    assert main(["train", "--config", "x.yaml"]) == 2
    err = capsys.readouterr().err
    assert err == ("vidgen train: error: training is not available in this installation (the module "
                   "vidgen.train.cli is missing)\n")
