"""The VAE round-trip shape measure of scripts/eval_shapes.py, with stand-in VAEs whose answers are known."""

import torch

from vidgen_lab.shapes_eval import EvalConfig, EvalResult, eval_vae_shapes, to_markdown


class _StandIn:
    """encode/decode over (B, 3, T, H, W) in [-1, 1]; `decode` maps the input through `fn`."""

    device = torch.device("cpu")

    def __init__(self, fn):
        self.fn = fn

    def encode(self, x):
        return x

    def decode(self, z):
        return self.fn(z)


def _round_corners(x):
    """A wide box blur: every object comes back as a soft blob, the way an undertrained decoder draws it."""
    b, c, t, h, w = x.shape
    frames = x.transpose(1, 2).reshape(b * t, c, h, w)  # (B·T, 3, H, W)
    k = 9
    blurred = torch.nn.functional.avg_pool2d(frames, k, stride=1, padding=k // 2, count_include_pad=False)
    return blurred.reshape(b, t, c, h, w).transpose(1, 2)  # back to (B, 3, T, H, W)


def test_round_trips_are_judged_per_shape_balanced_and_seeded():
    cfg = EvalConfig(roundtrip_clips=9)
    exact = eval_vae_shapes(_StandIn(lambda z: z), cfg, 9, 64)
    assert exact == {"circle": 1.0, "square": 1.0, "triangle": 1.0, "n": 9.0}  # a perfect VAE keeps every shape
    blank = eval_vae_shapes(_StandIn(lambda z: z[..., :1, :1].expand_as(z)), cfg, 9, 64)  # background only
    assert blank == {"circle": 0.0, "square": 0.0, "triangle": 0.0, "n": 9.0}
    blurred = eval_vae_shapes(_StandIn(_round_corners), cfg, 9, 64)
    assert blurred["square"] < 1.0 or blurred["triangle"] < 1.0  # rounded corners are read as other shapes
    assert eval_vae_shapes(_StandIn(_round_corners), cfg, 9, 64) == blurred
    # the shapes come in turn (circle, square, triangle, circle, ...), so a short run is still spread over them
    assert eval_vae_shapes(_StandIn(lambda z: z), EvalConfig(roundtrip_clips=2), 9, 64) == {
        "circle": 1.0, "square": 1.0, "n": 2.0}


def test_the_round_trip_row_is_in_the_table():
    table = to_markdown(EvalResult(roundtrip={"circle": 1.0, "square": 0.75, "triangle": 0.5, "n": 48.0}), "m")
    row = "| VAE round trips judged the right shape (48 fresh clips): circle / square / triangle | 100% / 75% / 50% |"
    assert row in table
