"""The procedural "shapes" world: one flat-coloured shape moving over a solid background.

Everything here is a pure function of a `ClipSpec`, so a clip can be re-rendered exactly from its spec, and outputs of a
model trained on this world can be judged from the pixels (see `vidgen.shapes.judge`).

Geometry, in pixels of an H×W frame: the object's bounding box is a square of side `size·W`, centred at
`(x·W, y·H)`. It moves along one axis at `speed·W` pixels per frame and bounces (mirror reflection) off the frame
edges, so it never leaves the frame. The caption names the *initial* direction; `sample_spec` starts the object far
enough from the wall it heads toward that the first `MIN_RUN_FRAMES` frames show that direction before any bounce.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

import numpy as np

BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (20, 20, 20),
    "gray": (128, 128, 128),
    "white": (235, 235, 235),
}
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 50, 50),
    "green": (50, 180, 70),
    "blue": (50, 90, 230),
    "yellow": (235, 210, 50),
    "magenta": (210, 60, 200),
    "cyan": (60, 200, 215),
}
# Colours outside the world: no default dataset, caption list, tokenizer vocabulary or judge palette holds them, so a
# model of the world has never seen one. They are drawn only when asked for by name (`sample_spec(colours=...)`,
# `data.shapes_extra_colours`), e.g. to teach a trained model a new colour with an adapter (docs/training_shapes.md).
EXTRA_COLOURS: dict[str, tuple[int, int, int]] = {
    "orange": (240, 130, 30),
}
PALETTE: dict[str, tuple[int, int, int]] = {**COLOURS, **EXTRA_COLOURS}  # every colour a clip may be rendered in
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down")
# Unit step (dx, dy) in image coordinates: y grows downwards.
DIRECTION_STEPS: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}

CAPTION_TEMPLATE = "a {colour} {shape} moving {direction} on a {background} background"
SPLITS = ("train", "heldout", "all")

DEFAULT_SIZE = 64
DEFAULT_FRAMES = 17
FPS = 8
SPEED_RANGE = (0.03, 0.05)  # fraction of the frame width per frame
OBJECT_SIZE = 0.25  # bounding-box side as a fraction of the frame width
MIN_RUN_FRAMES = 4  # frames of travel in the captioned direction guaranteed before the first bounce
_SUPERSAMPLE = 4  # sub-pixel samples per axis for edge anti-aliasing


@dataclass(frozen=True)
class Caption:
    """The four words that define a clip's caption."""

    colour: str
    shape: str
    direction: str
    background: str

    def __post_init__(self):
        for name, value, allowed in (
            ("colour", self.colour, tuple(PALETTE)),
            ("shape", self.shape, SHAPES),
            ("direction", self.direction, DIRECTIONS),
            ("background", self.background, tuple(BACKGROUNDS)),
        ):
            if value not in allowed:
                raise ValueError(f"unknown {name} {value!r}; expected one of {list(allowed)}")

    @property
    def text(self) -> str:
        return CAPTION_TEMPLATE.format(**dataclasses.asdict(self))

    @property
    def heldout(self) -> bool:
        """Held out from training: every magenta triangle, and every cyan shape moving up."""
        return (self.colour == "magenta" and self.shape == "triangle") or (
            self.colour == "cyan" and self.direction == "up"
        )


@dataclass(frozen=True)
class ClipSpec:
    """Everything needed to render one clip. Positions are the bounding-box centre in fractions of (W, H)."""

    colour: str
    shape: str
    direction: str
    background: str
    x: float = 0.5
    y: float = 0.5
    speed: float = 0.04  # fraction of the frame width per frame
    size: float = OBJECT_SIZE  # bounding-box side, fraction of the frame width

    def __post_init__(self):
        Caption(self.colour, self.shape, self.direction, self.background)  # validates the words
        if not 0.0 < self.size < 1.0:
            raise ValueError(f"size must be a fraction of the frame width in (0, 1), got {self.size}")
        if not 0.0 <= self.speed < 1.0:
            raise ValueError(f"speed must be a fraction of the frame width per frame in [0, 1), got {self.speed}")
        if not (0.0 <= self.x <= 1.0 and 0.0 <= self.y <= 1.0):
            raise ValueError(f"start position must lie in the frame, as fractions in [0, 1]; got {self.x=}, {self.y=}")

    @property
    def caption(self) -> Caption:
        return Caption(self.colour, self.shape, self.direction, self.background)

    @property
    def text(self) -> str:
        return self.caption.text


# A caption with one attribute left out (`partial_caption`), one form per attribute: training captions that teach the
# DiT each word on its own (vidgen.shapes.dataset.item_caption; docs/training_shapes.md has what they gave).
PARTIAL_TEMPLATES: dict[str, str] = {
    "colour": "a {shape} moving {direction} on a {background} background",
    "shape": "a {colour} shape moving {direction} on a {background} background",
    "direction": "a {colour} {shape} on a {background} background",
    "background": "a {colour} {shape} moving {direction}",
}


def partial_caption(caption: str | Caption, leave_out: str) -> str:
    """`caption` without one attribute (`leave_out`: colour, shape, direction or background), e.g. leaving out the
    colour of "a red circle moving up on a black background" gives "a circle moving up on a black background"."""
    if leave_out not in PARTIAL_TEMPLATES:
        raise ValueError(f"leave_out is the attribute to drop, one of {list(PARTIAL_TEMPLATES)}, got {leave_out!r}")
    cap = caption if isinstance(caption, Caption) else parse_caption(caption)
    return PARTIAL_TEMPLATES[leave_out].format(**dataclasses.asdict(cap))


def all_captions(split: str = "all", colours: tuple[str, ...] | None = None) -> list[str]:
    """Every caption of the world in a fixed order; `split` is "train", "heldout" or "all". `colours` (names from
    `PALETTE`) replaces the world's own colours, e.g. ("orange",) for the captions of an extra colour."""
    _check_split(split)
    colours = tuple(COLOURS) if colours is None else _check_colours(colours)
    out = []
    for colour, shape, direction, background in itertools.product(colours, SHAPES, DIRECTIONS, BACKGROUNDS):
        cap = Caption(colour, shape, direction, background)
        if split == "all" or cap.heldout == (split == "heldout"):
            out.append(cap.text)
    return out


def parse_caption(text: str) -> Caption:
    """The inverse of `Caption.text`; case, surrounding spaces, a final full stop and "grey" are tolerated."""
    words = text.strip().lower().rstrip(".").split()
    words = ["gray" if w == "grey" else w for w in words]
    pattern = CAPTION_TEMPLATE.split()
    if len(words) != len(pattern) or any(p != w for p, w in zip(pattern, words) if not p.startswith("{")):
        raise ValueError(f"caption {text!r} does not follow the template {CAPTION_TEMPLATE!r}")
    slots = {p.strip("{}"): w for p, w in zip(pattern, words) if p.startswith("{")}
    return Caption(**slots)


def sample_spec(rng: np.random.Generator, split: str = "train", caption: str | Caption | None = None,
                colours: tuple[str, ...] | None = None) -> ClipSpec:
    """A random clip: a caption drawn uniformly from `split` in `colours` (default: the world's; or the given caption),
    speed, and a start position.

    The start is uniform over positions where the object lies fully inside the frame and can travel `MIN_RUN_FRAMES`
    frames in its direction before bouncing, so the first frames always show the captioned direction.
    """
    _check_split(split)
    if caption is None:
        captions = all_captions(split, colours)
        cap = parse_caption(captions[int(rng.integers(len(captions)))])
    else:
        cap = caption if isinstance(caption, Caption) else parse_caption(caption)
    speed = float(rng.uniform(*SPEED_RANGE))
    half = OBJECT_SIZE / 2
    # Ranges are in square-frame units; on other aspect ratios render_clip folds any start into the frame, and the
    # run guarantee then holds only approximately along y.
    run = MIN_RUN_FRAMES * speed
    lo, hi = half, 1.0 - half
    dx, dy = DIRECTION_STEPS[cap.direction]
    x_lo, x_hi = (lo + run, hi) if dx < 0 else (lo, hi - run) if dx > 0 else (lo, hi)
    y_lo, y_hi = (lo + run, hi) if dy < 0 else (lo, hi - run) if dy > 0 else (lo, hi)
    return ClipSpec(
        cap.colour, cap.shape, cap.direction, cap.background,
        x=float(rng.uniform(x_lo, x_hi)), y=float(rng.uniform(y_lo, y_hi)), speed=speed,
    )


def trajectory(spec: ClipSpec, frames: int, height: int, width: int) -> np.ndarray:
    """Bounding-box centres in pixels, (frames, 2) as (cx, cy), with mirror bounces off the frame edges."""
    side = spec.size * width
    step = spec.speed * width
    dx, dy = DIRECTION_STEPS[spec.direction]
    t = np.arange(frames, dtype=np.float64)
    cx = _bounce(spec.x * width + dx * step * t, side / 2, width - side / 2)
    cy = _bounce(spec.y * height + dy * step * t, side / 2, height - side / 2)
    return np.stack([cx, cy], axis=1)


def render_clip(spec: ClipSpec, frames: int = DEFAULT_FRAMES, size: int | tuple[int, int] = DEFAULT_SIZE) -> np.ndarray:
    """Render `spec` as uint8 frames (frames, H, W, 3); `size` is an int (square) or (H, W). frames=1 is an image."""
    height, width = (size, size) if isinstance(size, int) else size
    if frames < 1 or height < 8 or width < 8:
        raise ValueError(f"need frames >= 1 and a frame of at least 8x8 pixels, got frames={frames}, size={size}")
    if spec.size * width > height:
        raise ValueError(f"object of side {spec.size * width:.1f} px does not fit a frame {height} px high")
    bg = np.asarray(BACKGROUNDS[spec.background], dtype=np.float64)
    fg = np.asarray(PALETTE[spec.colour], dtype=np.float64)
    s = _SUPERSAMPLE
    half = spec.size * width / 2
    out = np.empty((frames, height, width, 3), dtype=np.uint8)
    for i, (cx, cy) in enumerate(trajectory(spec, frames, height, width)):
        # Only the pixels of the bounding box (plus a margin) can be covered; sample them S×S times each.
        x0, x1 = max(0, int(np.floor(cx - half)) - 1), min(width, int(np.ceil(cx + half)) + 1)
        y0, y1 = max(0, int(np.floor(cy - half)) - 1), min(height, int(np.ceil(cy + half)) + 1)
        xs = x0 + (np.arange((x1 - x0) * s) + 0.5) / s  # sub-pixel sample centres
        ys = y0 + (np.arange((y1 - y0) * s) + 0.5) / s
        # Box coordinates in units of the half side: u right, v down, both in [-1, 1] inside the box.
        u = (xs[None, :] - cx) / half
        v = (ys[:, None] - cy) / half
        inside = _shape_mask(spec.shape, u, v)  # ((y1-y0)*S, (x1-x0)*S)
        cover = np.zeros((height, width))
        cover[y0:y1, x0:x1] = inside.reshape(y1 - y0, s, x1 - x0, s).mean(axis=(1, 3))  # coverage in [0, 1]
        frame = bg + cover[..., None] * (fg - bg)
        out[i] = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
    return out


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean (H*S, W*S) inside-test in box coordinates u, v ∈ [-1, 1]."""
    if shape == "circle":
        return u**2 + v**2 <= 1.0
    if shape == "square":
        return (np.abs(u) <= 1.0) & (np.abs(v) <= 1.0)
    if shape == "triangle":
        # Upright isosceles: apex at (0, -1), base from (-1, 1) to (1, 1); half-width grows linearly downwards.
        return (v <= 1.0) & (np.abs(u) <= (v + 1.0) / 2.0)
    raise ValueError(f"unknown shape {shape!r}; expected one of {list(SHAPES)}")


def _bounce(p: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Fold free positions `p` into [lo, hi] by mirror reflection (a triangle wave of period 2·(hi − lo))."""
    span = hi - lo
    if span <= 0:
        return np.full_like(p, (lo + hi) / 2)
    q = np.mod(p - lo, 2 * span)
    return lo + np.where(q <= span, q, 2 * span - q)


def _check_colours(colours: tuple[str, ...]) -> tuple[str, ...]:
    unknown = [c for c in colours if c not in PALETTE]
    if not colours or unknown:
        raise ValueError(f"colours must be names from the palette {list(PALETTE)}, got {list(colours)}")
    return tuple(colours)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
