import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tiny_pipeline import tiny_vidgen_pipeline
from vidgen.long_video_cli import main, resolve_prompts
from vidgen.video_io import read_video

ROOT = Path(__file__).resolve().parents[1]


def test_prompts_file_shorter_than_segments_reuses_last_line(tmp_path, capsys):
    f = tmp_path / "prompts.txt"
    f.write_text("a red circle\n\na blue square\n")
    assert resolve_prompts(None, str(f), 4) == (["a red circle", "a blue square"], 4)
    assert "the last one is reused" in capsys.readouterr().err
    assert resolve_prompts(None, str(f), None) == (["a red circle", "a blue square"], 2)  # one segment per line


@pytest.mark.parametrize("prompt, lines, segments, message", [
    ("a red circle", None, 0, "--segments must be >= 1, got 0"),
    ("a red circle", None, None, "--segments N is required"),
    (None, None, 2, "either a PROMPT or --prompts"),
    ("a red circle", "a\n", 2, "either a PROMPT or --prompts"),
    (None, "a\nb\nc\n", 2, "has 3 prompts but --segments is 2"),
    (None, "\n  \n", 2, "has no prompts"),
])
def test_bad_prompt_arguments(tmp_path, prompt, lines, segments, message):
    f = None
    if lines is not None:
        f = tmp_path / "prompts.txt"
        f.write_text(lines)
    with pytest.raises(ValueError, match=message):
        resolve_prompts(prompt, None if f is None else str(f), segments)


def test_zero_segments_fails_before_loading_a_model(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["a red circle", "--segments", "0", "-o", str(tmp_path / "x.mp4"), "--model", str(tmp_path / "none")])
    assert e.value.code == 2 and "--segments must be >= 1, got 0" in capsys.readouterr().err


def test_bad_context_frames_fail_before_loading_weights(tmp_path, capsys):
    model = tiny_vidgen_pipeline(num_frames=5).save_pretrained(tmp_path / "model")
    (model / "transformer" / "config.json").write_text("not json")  # loading the weights would fail differently
    with pytest.raises(SystemExit):
        main(["a red circle", "--segments", "2", "-o", str(tmp_path / "x.mp4"), "--model", str(model),
              "--context-frames", "5"])
    assert "leaves nothing to generate" in capsys.readouterr().err


def test_cli_writes_long_video_with_drift_report(tmp_path, capsys):
    model = tiny_vidgen_pipeline(height=16, width=16, num_inference_steps=1).save_pretrained(tmp_path / "model")
    out = tmp_path / "long.mp4"
    argv = ["a red circle", "--segments", "2", "-o", str(out), "--model", str(model), "--frames", "5",
            "--context-frames", "1", "--seed", "1", "--drift-report", "--quiet", "--handover", "latent",
            "--color-anchor"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "wrote" in text and "| segment | L | a | b | ΔE vs segment 1 | seam jump into segment |" in text
    assert len(read_video(out)[0]) == 5 + 4
    with pytest.raises(SystemExit):  # never clobbers without --overwrite
        main(argv)
    assert "already exists" in capsys.readouterr().err


def test_script_is_wired():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "long_video.py"), "--help"], capture_output=True,
                       text=True, env=env, timeout=120)
    assert r.returncode == 0 and "--resume" in r.stdout and "--drift-report" in r.stdout
