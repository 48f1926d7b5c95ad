"""Colours outside the shapes world (world.EXTRA_COLOURS, e.g. orange): drawn only when asked for, so everything the
default model, its data and its judge see stays as it was."""

import numpy as np
import pytest

from vidgen.shapes.dataset import ShapesDataset, item_spec
from vidgen.shapes.judge import judge_clip
from vidgen.shapes.text import build_tokenizer, vocabulary
from vidgen.shapes.world import (
    COLOURS, EXTRA_COLOURS, PALETTE, ClipSpec, all_captions, parse_caption, render_clip, sample_spec,
)


def test_the_world_itself_is_unchanged():
    assert "orange" in EXTRA_COLOURS and not set(EXTRA_COLOURS) & set(COLOURS)
    assert len(all_captions("all")) == 6 * 3 * 4 * 3 and not any("orange" in c for c in all_captions("all"))
    assert "orange" not in vocabulary()  # the text encoder's vocabulary (and so its weights) is as it was
    # items of the default dataset are the same clips with or without extra colours on offer at fraction 0
    for i in range(20):
        assert item_spec(0, i) == item_spec(0, i, "train", 0.0, (), 0.0)


def test_orange_captions_render_and_parse():
    caps = all_captions("all", colours=("orange",))
    assert len(caps) == 3 * 4 * 3 and all(parse_caption(c).colour == "orange" for c in caps)
    clip = render_clip(ClipSpec("orange", "circle", "up", "black"), frames=1)
    assert tuple(clip[0, 32, 32]) == EXTRA_COLOURS["orange"]
    # "orange" is not a word of the frozen text encoder: it tokenises to <unk>, in the colour's position
    tok = build_tokenizer()
    ids = tok("a orange circle moving up on a black background")["input_ids"]
    assert ids[1] == tok.unk_token_id and tok.unk_token_id not in tok(all_captions("all")[0])["input_ids"]
    with pytest.raises(ValueError, match="palette"):
        sample_spec(np.random.default_rng(0), colours=("purple",))


def test_extra_fraction_mixes_orange_and_keeps_the_other_items():
    plain = ShapesDataset(80, seed=3)
    mixed = ShapesDataset(80, seed=3, extra_colours=("orange",), extra_fraction=0.5)
    orange = [i for i in range(80) if mixed.spec(i).colour == "orange"]
    assert 25 <= len(orange) <= 55
    assert {mixed.spec(i).shape for i in orange} == {"circle", "square", "triangle"}
    assert {mixed.spec(i).direction for i in orange} == {"left", "right", "up", "down"}
    assert all(mixed.spec(i) == plain.spec(i) for i in range(80) if i not in orange)
    with pytest.raises(ValueError, match="extra_fraction"):
        ShapesDataset(10, extra_colours=("orange",))


def test_judge_reads_orange_only_with_the_full_palette():
    caps = all_captions("all", ("orange",))[::2]  # every shape, direction and background
    specs = [sample_spec(np.random.default_rng(i), caption=c) for i, c in enumerate(caps)]
    verdicts = [judge_clip(render_clip(s, frames=5), palette=PALETTE) for s in specs]
    assert all(v.colour == "orange" and v.caption == s.text for v, s in zip(verdicts, specs))
    assert judge_clip(render_clip(specs[0])).colour in COLOURS  # the default palette is the world's own
    # the world's own colours are still read right with orange in the palette
    for c in all_captions("all")[::23]:
        spec = sample_spec(np.random.default_rng(1), caption=c)
        assert judge_clip(render_clip(spec, frames=5), palette=PALETTE).colour == spec.colour
