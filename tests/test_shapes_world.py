import numpy as np
import pytest

from vidgen.shapes.world import (
    BACKGROUNDS, COLOURS, DIRECTION_STEPS, MIN_RUN_FRAMES, OBJECT_SIZE, SPEED_RANGE, Caption, ClipSpec, all_captions,
    parse_caption, partial_caption, render_clip, sample_spec, trajectory,
)


def test_caption_sets_and_heldout_rule():
    train, held, every = all_captions("train"), all_captions("heldout"), all_captions("all")
    assert len(every) == 6 * 3 * 4 * 3 == 216
    assert len(held) == 12 + 9  # magenta triangles (4 directions × 3 backgrounds) + cyan shapes moving up (3 × 3)
    assert set(train) | set(held) == set(every) and not set(train) & set(held)
    for text in held:
        c = parse_caption(text)
        assert (c.colour, c.shape) == ("magenta", "triangle") or (c.colour, c.direction) == ("cyan", "up")
    assert "a cyan circle moving up on a black background" in held
    assert "a cyan circle moving down on a black background" in train
    assert "a magenta square moving up on a white background" in train


def test_parse_caption_round_trip_and_errors():
    for text in all_captions():
        assert parse_caption(text).text == text
    assert parse_caption("  A Red Circle moving LEFT on a grey background.") == Caption("red", "circle", "left", "gray")
    with pytest.raises(ValueError, match="template"):
        parse_caption("a red circle moving left")
    with pytest.raises(ValueError, match="colour 'purple'"):
        parse_caption("a purple circle moving left on a black background")


def test_partial_captions_leave_out_exactly_one_attribute():
    cap = "a magenta triangle moving up on a white background"
    assert partial_caption(cap, "colour") == "a triangle moving up on a white background"
    assert partial_caption(cap, "shape") == "a magenta shape moving up on a white background"
    assert partial_caption(cap, "direction") == "a magenta triangle on a white background"
    assert partial_caption(parse_caption(cap), "background") == "a magenta triangle moving up"
    for text in all_captions():
        c = parse_caption(text)
        for attribute, value in (("colour", c.colour), ("shape", c.shape), ("direction", c.direction),
                                 ("background", c.background)):
            words = partial_caption(text, attribute).split()
            assert value not in words and all(getattr(c, a) in words for a in ("colour", "shape", "direction",
                                                                                "background") if a != attribute)
    with pytest.raises(ValueError, match="leave_out"):
        partial_caption(cap, "speed")
    with pytest.raises(ValueError, match="template"):
        partial_caption("a triangle moving up on a white background", "colour")


def test_render_is_flat_colours_with_the_right_size_and_deterministic():
    spec = ClipSpec("blue", "square", "right", "white", x=0.3, y=0.6, speed=0.04)
    clip = render_clip(spec)
    assert clip.shape == (17, 64, 64, 3) and clip.dtype == np.uint8
    assert np.array_equal(clip, render_clip(spec))
    bg, fg = np.array(BACKGROUNDS["white"], float), np.array(COLOURS["blue"], float)
    # Every pixel is the background, the object colour, or (at anti-aliased edges) a blend on the segment between them.
    alpha = ((clip - bg) @ (fg - bg)) / ((fg - bg) @ (fg - bg))
    residual = clip - (bg + alpha[..., None] * (fg - bg))
    assert np.abs(residual).max() <= 1.0 and alpha.min() >= -0.01 and alpha.max() <= 1.01
    area = alpha.sum(axis=(1, 2))
    assert np.allclose(area, (OBJECT_SIZE * 64) ** 2, rtol=0.01)  # a square of side 25% of the width
    assert np.array_equal(render_clip(spec, frames=1), clip[:1])  # an image is the clip's first frame


def test_motion_is_constant_speed_and_bounces_inside_the_frame():
    spec = ClipSpec("red", "circle", "left", "black", x=0.3, y=0.5, speed=0.05)
    c = trajectory(spec, 40, 64, 64)
    half = OBJECT_SIZE * 64 / 2
    assert np.all(c[:, 0] >= half - 1e-9) and np.all(c[:, 0] <= 64 - half + 1e-9)
    assert np.allclose(c[:, 1], 32.0)
    step = np.diff(c[:, 0])
    v = 0.05 * 64
    assert np.all(np.abs(step) <= v + 1e-9)
    full = np.isclose(np.abs(step), v)
    # Between bounces the object moves at full speed; a step is shorter only when it reflects off a wall, where the
    # direction of motion reverses: the distance to the wall and back adds up to the speed.
    assert full.mean() > 0.8 and step[0] < 0 and (step > 0).any()
    for i in np.nonzero(~full)[0]:
        wall = half if c[i, 0] < 32 else 64 - half
        assert np.isclose(abs(c[i, 0] - wall) + abs(c[i + 1, 0] - wall), v)


def test_sample_spec_is_seeded_respects_split_and_runs_before_bouncing():
    a = [sample_spec(np.random.default_rng(7), "all") for _ in range(2)]
    assert a[0] == a[1]
    rng = np.random.default_rng(0)
    held = set(all_captions("heldout"))
    for split in ("train", "heldout"):
        for _ in range(100):
            spec = sample_spec(rng, split)
            assert (spec.text in held) == (split == "heldout")
            assert SPEED_RANGE[0] <= spec.speed <= SPEED_RANGE[1]
            c = trajectory(spec, MIN_RUN_FRAMES + 1, 64, 64)
            step = np.diff(c, axis=0) / (spec.speed * 64)  # unit steps while no bounce has happened
            assert np.allclose(step, DIRECTION_STEPS[spec.direction])
    fixed = sample_spec(rng, caption="a cyan circle moving up on a gray background")
    assert fixed.text == "a cyan circle moving up on a gray background"


def test_bad_specs_are_clear_errors():
    with pytest.raises(ValueError, match="shape 'hexagon'"):
        ClipSpec("red", "hexagon", "left", "black")
    with pytest.raises(ValueError, match="start position"):
        ClipSpec("red", "circle", "left", "black", x=1.5)
    with pytest.raises(ValueError, match="split"):
        all_captions("test")
