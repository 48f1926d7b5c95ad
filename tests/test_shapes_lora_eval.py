"""scripts/vidgen_lab/shapes_lora_eval.py with stand-in pipelines whose clips are known: the world's own rendering of
each caption, and an "adapter" that draws every colour as red."""

from types import SimpleNamespace

import numpy as np
import pytest

from vidgen.shapes.world import parse_caption, render_clip, sample_spec
from vidgen_lab.shapes_lora_eval import LoRAEvalConfig, evaluate_lora, to_markdown


class _Renderer:
    def __init__(self, colour=None):
        self.dit, self.colour = SimpleNamespace(colour=colour), colour

    def __call__(self, prompts, seed, progress=False, **kwargs):
        rng = np.random.default_rng(seed)
        frames = []
        for p in prompts:
            colour = self.dit.colour or parse_caption(p).colour
            text = p.replace(f" {parse_caption(p).colour} ", f" {colour} ")
            frames.append(render_clip(sample_spec(rng, "all", text), 9, 64) / 255.0)
        return SimpleNamespace(frames=frames)


def test_new_colour_and_the_cost_to_the_world_are_read_from_the_same_prompts():
    cfg = LoRAEvalConfig(new_clips=6, seen_clips=6, heldout_clips=3, batch_size=4)
    pipe = _Renderer()
    right = evaluate_lora(pipe, lambda dit: SimpleNamespace(colour=None), cfg)
    assert right.new["colour"] == 1.0 and right.new["n"] == 6
    assert right.base["train"]["colour"] == right.adapted["train"]["colour"] == 1.0
    red = evaluate_lora(pipe, lambda dit: SimpleNamespace(colour="red"), cfg)
    assert red.new["colour"] == 0.0 and red.base["train"]["colour"] == 1.0 > red.adapted["train"]["colour"]
    assert pipe.dit.colour is None  # the pipeline's own DiT is back
    table = to_markdown(red, cfg)
    assert "| orange (new) | 6 | on | 0.0% |" in table and "| world's own, heldout | 3 | off | 100.0% |" in table
    with pytest.raises(ValueError, match="colour must be one of"):
        LoRAEvalConfig(colour="purple")
