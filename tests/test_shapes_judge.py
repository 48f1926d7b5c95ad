import math

import numpy as np
import pytest

from vidgen.shapes.judge import _label, judge_clip, score, score_by_split
from vidgen.shapes.world import BACKGROUNDS, COLOURS, DIRECTIONS, ClipSpec, all_captions, render_clip, sample_spec


def _ground_truth_specs():
    """Every caption once at a random start, plus starts against the walls (object touching the border)."""
    rng = np.random.default_rng(0)
    specs = [sample_spec(rng, "all", caption=text) for text in all_captions("all")]
    lo, hi = 0.125, 0.875  # the object's centre when its box touches a wall
    walls = {"right": (lo, hi), "left": (hi, lo), "down": (lo, hi), "up": (hi, lo)}  # (wall behind, side wall)
    for i, direction in enumerate(DIRECTIONS):
        for j, (colour, shape, background) in enumerate(
            [("red", "circle", "black"), ("cyan", "triangle", "white"), ("yellow", "square", "gray"),
             ("blue", "triangle", "black"), ("magenta", "circle", "gray"), ("green", "square", "white")]
        ):
            behind, side = walls[direction]
            x, y = (behind, side) if direction in ("left", "right") else (side, behind)
            specs.append(ClipSpec(colour, shape, direction, background, x=x, y=y, speed=0.03 + 0.004 * j))
    return specs


def _blur_and_noise(clip, rng, sigma=8.0):
    """A slight [1 2 1]/4 blur in each direction plus Gaussian noise of σ = 8/255, like a VAE reconstruction."""
    f = clip.astype(np.float64)
    for axis in (1, 2):
        p = np.pad(f, [(0, 0)] * axis + [(1, 1)] + [(0, 0)] * (3 - axis), mode="edge")
        n = f.shape[axis]
        left, mid, right = (np.take(p, range(k, n + k), axis) for k in range(3))
        f = (left + 2 * mid + right) / 4
    return np.clip(np.rint(f + rng.normal(0, sigma, f.shape)), 0, 255).astype(np.uint8)


@pytest.mark.slow
def test_judge_reads_ground_truth_clips_clean_and_degraded():
    specs = _ground_truth_specs()
    assert len(specs) >= 200
    rng = np.random.default_rng(1)
    clean, degraded = [], []
    for spec in specs:
        clip = render_clip(spec)
        clean.append(judge_clip(clip))
        degraded.append(judge_clip(_blur_and_noise(clip[:9], rng)))  # 9 frames keep the test fast
    for verdicts in (clean, degraded):
        s = score(verdicts, specs)
        for key in ("background", "colour", "shape", "direction", "all", "one_object"):
            assert s[key] >= 0.99, (key, s)
    assert all(v.caption == s.text for v, s in zip(clean, specs))


def test_float_inputs_images_and_torch_tensors_are_judged_alike():
    import torch

    spec = ClipSpec("green", "triangle", "down", "gray", x=0.5, y=0.3)
    clip = render_clip(spec)
    v = judge_clip(clip)
    assert judge_clip(clip.astype(np.float32) / 255) == v
    assert judge_clip(torch.from_numpy(clip).float() / 255) == v
    image = judge_clip(clip[0])  # (H, W, 3): one frame has no direction
    assert (image.colour, image.shape, image.direction, image.objects_per_frame) == ("green", "triangle", None, (1,))
    with pytest.raises(ValueError, match="expected frames"):
        judge_clip(clip[..., :2])


def test_counts_objects_and_handles_empty_or_static_frames():
    bg = np.array(BACKGROUNDS["black"], np.uint8)
    empty = np.broadcast_to(bg, (3, 64, 64, 3)).copy()
    v = judge_clip(empty)
    assert v.background == "black" and v.colour is None and v.objects_per_frame == (0, 0, 0)
    assert v.one_object_fraction == 0 and v.caption is None and math.isnan(v.fill_ratio)
    two = empty.copy()
    two[:, 5:20, 5:20] = COLOURS["red"]
    two[:, 40:55, 40:55] = COLOURS["red"]
    two[2, 30:32, 30:32] = COLOURS["red"]  # a speck below the size threshold is not an object
    v = judge_clip(two)
    assert v.objects_per_frame == (2, 2, 2) and v.shape == "square" and v.colour == "red"
    assert v.direction is None and np.allclose(v.velocity, 0.0)  # nothing moves


def test_component_labels_match_a_flood_fill():
    rng = np.random.default_rng(0)
    mask = rng.random((3, 24, 24)) < 0.45
    labels = _label(mask)
    for f in range(3):
        # Reference: breadth-first flood fill with 8-connectivity.
        seen = np.zeros((24, 24), bool)
        for y0, x0 in zip(*np.nonzero(mask[f])):
            if seen[y0, x0]:
                continue
            comp, todo = [], [(y0, x0)]
            seen[y0, x0] = True
            while todo:
                y, x = todo.pop()
                comp.append((y, x))
                for ny in range(max(0, y - 1), min(24, y + 2)):
                    for nx in range(max(0, x - 1), min(24, x + 2)):
                        if mask[f, ny, nx] and not seen[ny, nx]:
                            seen[ny, nx] = True
                            todo.append((ny, nx))
            ys, xs = zip(*comp)
            assert len(set(labels[f, ys, xs])) == 1  # one label per component...
            assert (labels[f] == labels[f, y0, x0]).sum() == len(comp)  # ...used by no other pixel
    assert np.all((labels > 0) == mask)


def test_score_closed_form():
    spec = ClipSpec("red", "circle", "left", "black", x=0.5, y=0.5)
    right = judge_clip(render_clip(spec))
    wrong_shape = judge_clip(render_clip(ClipSpec("red", "square", "left", "black", x=0.5, y=0.5)))
    s = score([right, wrong_shape], [spec, spec.text])
    assert s == {"background": 1.0, "colour": 1.0, "shape": 0.5, "direction": 1.0, "all": 0.5, "one_object": 1.0,
                 "n": 2.0}
    with pytest.raises(ValueError, match="one verdict per clip"):
        score([right], [spec, spec])
    held = ClipSpec("magenta", "triangle", "left", "black", x=0.5, y=0.5)
    split = score_by_split([right, wrong_shape, right], [spec, spec, held])
    assert split["train"]["shape"] == 0.5 and split["train"]["n"] == 2
    assert split["heldout"]["colour"] == 0.0 and split["heldout"]["n"] == 1
