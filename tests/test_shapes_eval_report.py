"""scripts/eval_shapes.py's text-to-video report: sample size and seed, shape by shape, and the standard error, with a
stand-in pipeline that draws the world's own clips (so the judge's answers are known)."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from vidgen_lab.shapes_eval import EVAL_SEED, EvalConfig, EvalResult, evaluate, shape_accuracy, to_markdown
from vidgen.shapes.judge import Verdict
from vidgen.shapes.world import parse_caption, render_clip, sample_spec

ROOT = Path(__file__).resolve().parents[1]


class _Renderer:
    """pipe(prompts, seed=...) → .frames: each caption rendered by the world, its shape replaced by `shape` if given."""

    config = SimpleNamespace(num_frames=9, height=64, width=64)

    def __init__(self, shape=None):
        self.shape, self.calls = shape, []

    def __call__(self, prompts, seed, progress=False, **kwargs):
        self.calls.append((list(prompts), seed))
        rng = np.random.default_rng(seed)
        frames = []
        for p in prompts:
            c = parse_caption(p)
            text = p if self.shape is None else p.replace(f" {c.shape} ", f" {self.shape} ")
            frames.append(render_clip(sample_spec(rng, "all", text), 9, 64) / 255.0)
        return SimpleNamespace(frames=frames)


def test_sample_size_and_seed_are_the_configs():
    pipe = _Renderer()
    result = evaluate(pipe, EvalConfig(seen_clips=5, heldout_clips=3, batch_size=2, seed=777), ("t2v",))
    assert result.t2v["train"]["n"] == 5 and result.t2v["heldout"]["n"] == 3
    assert result.t2v["train"]["shape"] == 1.0 and result.t2v["heldout"]["shape"] == 1.0  # the world's own clips
    assert sum(n for _, n in result.t2v_shapes["train"].values()) == 5
    assert sum(n for _, n in result.t2v_shapes["heldout"].values()) == 3
    assert [seed for _, seed in pipe.calls] == [777, 778, 779, 780]  # batch j: noise seed + j
    assert result.seed == 777
    other = _Renderer()
    evaluate(other, EvalConfig(seen_clips=5, heldout_clips=3, batch_size=2, seed=778), ("t2v",))
    assert [p for p, _ in other.calls] != [p for p, _ in pipe.calls]  # another seed draws other captions


def test_several_seeds_are_judged_together():
    cfg = EvalConfig(seen_clips=3, heldout_clips=2, batch_size=4, seed=5)
    pooled = evaluate(_Renderer(shape="circle"), dataclasses.replace(cfg, t2v_seeds=(5, 9)), ("t2v",))
    single = [evaluate(_Renderer(shape="circle"), dataclasses.replace(cfg, seed=s), ("t2v",)) for s in (5, 9)]
    assert pooled.t2v["train"]["n"] == 6 and pooled.t2v["heldout"]["n"] == 4
    for split in ("train", "heldout"):  # the pooled counts are the two runs' counts added
        for shape, (_, n) in pooled.t2v_shapes[split].items():
            assert n == sum(r.t2v_shapes[split].get(shape, (0, 0))[1] for r in single)
    assert pooled.t2v["train"]["shape"] == pytest.approx(
        sum(r.t2v["train"]["shape"] * 3 for r in single) / 6)
    assert "text-to-video over seeds 5, 9, pooled" in to_markdown(pooled, "m")


def test_shapes_are_reported_one_by_one():
    result = evaluate(_Renderer(shape="square"), EvalConfig(seen_clips=9, heldout_clips=6, batch_size=4), ("t2v",))
    seen = result.t2v_shapes["train"]
    assert {k: v[0] for k, v in seen.items()} == {"circle": 0.0, "square": 1.0, "triangle": 0.0}
    assert result.t2v["train"]["shape"] == pytest.approx(seen["square"][1] / 9)
    assert result.t2v["train"]["colour"] == 1.0  # only the shape was changed
    table = to_markdown(result, "m")
    assert "| text-to-video shape: circle / square / triangle | 0% / 100% / 0% |" in table
    assert "VAE reconstruction" not in table and "long video" not in table  # only the parts that were measured
    assert "|---|---:|---|" not in table  # nor an empty second table


def test_shape_accuracy_counts_each_captioned_shape():
    prompts = ["a red circle moving left on a black background", "a red circle moving up on a gray background",
               "a magenta triangle moving up on a white background"]  # the last is held out
    verdicts = [Verdict("black", "red", s, "left", (1, 1), 1.0, (1.0, 0.0)) for s in ("circle", "square", "triangle")]
    assert shape_accuracy(verdicts, prompts) == {"train": {"circle": (0.5, 2)}, "heldout": {"triangle": (1.0, 1)}}
    with pytest.raises(ValueError, match="one verdict per clip"):
        shape_accuracy(verdicts[:2], prompts)


def test_the_table_gives_the_standard_error_and_a_non_standard_seed():
    result = EvalResult(t2v={"train": {"shape": 0.85, "n": 72.0}, "heldout": {"shape": 0.5, "n": 42.0}}, seed=5)
    table = to_markdown(result, "m")
    assert "| standard error of the shape rate | ±4.2 points | ±7.7 points | |" in table  # √(.85·.15/72), √(.25/42)
    assert "seed 5, not the standard `EVAL_SEED`" in table
    assert f"(`EVAL_SEED` = {EVAL_SEED})" in to_markdown(EvalResult(), "m")


@pytest.mark.parametrize("field, value", [("seen_clips", -1), ("heldout_clips", 2.5), ("seed", -3), ("batch_size", 0),
                                          ("t2v_seeds", [1, 2]), ("t2v_seeds", (1, -2)), ("t2v_seeds", (3, 3))])
def test_bad_eval_settings_are_refused_by_name(field, value):
    with pytest.raises(ValueError, match=f"EvalConfig.{field}"):
        EvalConfig(**{field: value})
    EvalConfig(seed=np.int64(5), t2v_seeds=(np.int64(1), 2))  # any integer type will do


def test_the_script_refuses_bad_sample_sizes_before_loading_a_model():
    run = [sys.executable, str(ROOT / "scripts" / "eval_shapes.py"), "--model", "no-such-folder", "--no-write"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    bad = subprocess.run([*run, "--seen-clips", "-4"], capture_output=True, text=True, cwd=ROOT, env=env)
    assert bad.returncode == 2 and "EvalConfig.seen_clips must be an integer ≥ 0, got -4" in bad.stderr
    none = subprocess.run([*run, "--seen-clips", "0", "--heldout-clips", "0"], capture_output=True, text=True, cwd=ROOT,
                          env=env)
    assert none.returncode == 2 and "would judge no clip" in none.stderr
