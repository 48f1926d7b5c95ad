"""The shipped default model (vidgen/assets/default), when present: loads with no argument and generates at its own
defaults. Few steps: this checks wiring and shapes, not quality (scripts/eval_shapes.py measures that)."""

import json

import pytest

from vidgen.model_folder import DEFAULT_MODEL_DIR, OUR_CONFIG

pytestmark = pytest.mark.skipif(not (DEFAULT_MODEL_DIR / OUR_CONFIG).is_file(),
                                reason="no embedded default model in vidgen/assets/default")


@pytest.fixture(scope="module")
def pipe():
    from vidgen import VideoPipeline

    return VideoPipeline.from_pretrained()


def test_defaults_are_the_models_own(pipe):
    saved = json.loads((DEFAULT_MODEL_DIR / OUR_CONFIG).read_text())
    assert (pipe.config.num_frames, pipe.config.height, pipe.config.width, pipe.config.fps) == (17, 64, 64, 8)
    assert saved["num_inference_steps"] == pipe.config.num_inference_steps


def test_weights_fit_the_repository_budget():
    total = sum(p.stat().st_size for p in DEFAULT_MODEL_DIR.rglob("*") if p.is_file())
    assert total <= 30 * 2**20


def test_generates_a_clip_and_an_image(pipe):
    clip = pipe("a red circle moving right on a black background", num_inference_steps=2, seed=0, progress=False)
    assert clip.frames.shape == (1, 17, 64, 64, 3)
    assert 0.0 <= clip.frames.min() and clip.frames.max() <= 1.0
    image = pipe("a blue square moving up on a white background", num_frames=1, num_inference_steps=2, seed=0,
                 progress=False)
    assert image.frames.shape == (1, 1, 64, 64, 3)


def test_generates_what_the_caption_says(pipe):
    """A floor under what the shipped model does well (scripts/eval_shapes.py measures everything against the issue's
    targets): 6 captions at the model's own defaults, judged from the pixels, get background and colour right and show
    one object in most frames. Shape and direction are not yet reliable (README), so they are not asserted here."""
    from vidgen.shapes.judge import judge_clip, score

    prompts = ["a red circle moving right on a black background", "a blue square moving up on a white background",
               "a yellow triangle moving left on a gray background", "a green square moving down on a black background",
               "a magenta circle moving up on a gray background", "a cyan triangle moving down on a white background"]
    frames = pipe(prompts, seed=0, progress=False).frames
    scores = score([judge_clip(f) for f in frames], prompts)
    assert scores["background"] >= 5 / 6 and scores["colour"] >= 5 / 6 and scores["one_object"] >= 0.8, scores


@pytest.mark.slow
def test_the_readme_main_command_writes_a_clip(tmp_path):
    """`vidgen generate PROMPT -o clip.mp4` with no --model uses this model at its own defaults, in a fresh process."""
    import subprocess
    import sys

    from vidgen.video_io import read_video

    out = tmp_path / "clip.mp4"
    cmd = [sys.executable, "-m", "vidgen", "generate", "a red circle moving right on a black background", "-o", str(out),
           "--steps", "2"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    frames, fps = read_video(out)
    assert frames.shape == (17, 64, 64, 3) and fps == 8
