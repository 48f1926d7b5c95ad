"""One generation call, resolved and checked before any heavy work.

`GenerationRequest.resolve(defaults, geometry, **settings)` fills every unset setting from the model's
`PipelineConfig` and checks every value once, raising an error that names the argument, what was given and what is
expected. The pipeline, `vidgen generate`, long video and parallel generation all build their calls through it, so
the same argument gets the same answer everywhere, and a command line can resolve a request before loading a model.

The latent-shape rule lives here too: T = 1 + 4k pixel frames ⇔ F = 1 + k latent frames, H × W ⇔ H/8 × W/8.
"""

from __future__ import annotations

import math
import numbers
import random
import warnings
from dataclasses import dataclass, field

SEED_LIMIT = 2**64  # seeds are integers in [0, 2⁶⁴): what torch.Generator.manual_seed takes
OUTPUT_TYPES = ("np", "pt", "pil", "latent")
SIZE_WARNING_FACTOR = 4  # warn above this many times the model's own pixel count per frame


@dataclass(frozen=True)
class PipelineConfig:
    """A model's generation defaults, saved beside its weights; every one can be overridden per call."""

    num_frames: int = 81
    height: int = 480
    width: int = 832
    num_inference_steps: int = 50
    guidance_scale: float = 5.0
    shift: float = 3.0  # Wan 2.1's flow shift at 480p
    fps: int = 16
    negative_prompt: str = ""
    # Text-to-video in two passes: latent frame 0 alone first (the text-to-image case), then the clip with it held
    # clean, as in frame-to-video. The shapes model moves the stated way more often so (docs/training_shapes.md).
    anchor_first: bool = False
    sampler: str = "euler"  # a diffusers folder's scheduler names its own (UniPC for Wan's)
    # Wan's multistep schedulers (UniPC, DPM-Solver) feed the DiT whole timesteps t = ⌊1000·σ⌋ (at most 999); a
    # folder whose scheduler does so keeps that, so its clips match the reference implementation's.
    integer_timesteps: bool = False
    # The model was trained to hold latent frames clean at t = 0 among noisy ones (per-frame timesteps): image=,
    # video= and long videos use it. Wan 2.1 text-to-video was not (refused unless asked for: clean_anchor=True).
    clean_frames: bool = True
    # Two experts (Wan 2.2 A14B): `transformer` while t = 1000·σ >= boundary_ratio·1000, `transformer_2` after.
    boundary_ratio: float | None = None


@dataclass(frozen=True)
class Geometry:
    """What a model fixes about shapes: latent channels, the VAE's compression in time and space, the DiT's patch."""

    latent_channels: int = 16
    temporal: int = 4
    spatial: int = 8
    patch: int = 2

    @property
    def multiple(self) -> int:
        """Heights and widths are multiples of this: one DiT patch of VAE-compressed pixels."""
        return self.spatial * self.patch

    @classmethod
    def of(cls, dit, vae) -> "Geometry":
        return cls(dit.config.out_dim, vae.config.temporal_compression, vae.config.spatial_compression,
                   dit.config.patch_size[1])

    def latent_frames(self, num_frames: int) -> int:
        return 1 + (num_frames - 1) // self.temporal

    def pixel_frames(self, latent_frames: int) -> int:
        """Pixel frames that F ≥ 1 leading latent frames decode to: 1 + temporal·(F − 1)."""
        return 1 + self.temporal * (latent_frames - 1)

    def latent_shape(self, batch: int, num_frames: int, height: int, width: int) -> tuple[int, int, int, int, int]:
        """(B, C, F, h, w) of the latents of `batch` clips of num_frames × height × width pixels."""
        return (batch, self.latent_channels, self.latent_frames(num_frames), height // self.spatial,
                width // self.spatial)


@dataclass(frozen=True)
class GenerationRequest:
    """Every setting of one call, resolved from the model's defaults and checked; see `resolve`.

    seed: the noise seed of the call (one generator draws the noise of all its videos); a long video's segment i
    and batch prompt i of `vidgen generate --prompts` use seed + i."""

    num_frames: int
    height: int
    width: int
    num_inference_steps: int
    guidance_scale: float
    shift: float
    sampler: str
    seed: int
    fps: float
    negative_prompt: str | tuple[str, ...]
    anchor_first: bool
    output_type: str = "np"
    num_videos_per_prompt: int = 1
    context_noise: float = 0.0
    geometry: Geometry = field(default_factory=Geometry)
    guidance_scale_2: float | None = None  # the second expert's (two-expert models only)

    @property
    def guided(self) -> bool:
        """Whether any step is guided (and so needs the negative prompt's context)."""
        return max(self.guidance_scale, self.guidance_scale_2 or 0.0) > 1

    def latent_shape(self, batch: int) -> tuple[int, int, int, int, int]:
        return self.geometry.latent_shape(batch, self.num_frames, self.height, self.width)

    @classmethod
    def resolve(cls, defaults: PipelineConfig, geometry: Geometry = Geometry(), *, num_frames=None, height=None,
                width=None, num_inference_steps=None, guidance_scale=None, shift=None, sampler=None, seed=None,
                fps=None, negative_prompt=None, anchor_first=None, output_type="np", num_videos_per_prompt=1,
                context_noise=0.0, guidance_scale_2=None, image_size: tuple[int, int] | None = None,
                seeds_used: int = 1) -> "GenerationRequest":
        """A checked request: each unset (None) setting is the model's default. `image_size` (H, W) of a
        conditioning image fills a missing height/width (aspect ratio kept, rounded down to the size multiple);
        `seeds_used` is how many consecutive seeds the call takes from `seed`. No seed: one is drawn.
        guidance_scale_2 (two-expert models): None is guidance_scale."""
        if guidance_scale_2 is not None and defaults.boundary_ratio is None:
            raise ValueError("guidance_scale_2 is the second expert's guidance; this model has one expert (no "
                             "boundary_ratio), so pass guidance_scale only")
        pick = lambda value, default: default if value is None else value  # noqa: E731
        if image_size is not None and (height is None or width is None):
            height, width = _size_from_image(image_size, height, width, geometry.multiple)
        request = cls(
            num_frames=_whole("num_frames", pick(num_frames, defaults.num_frames)),
            height=_whole("height", pick(height, defaults.height)),
            width=_whole("width", pick(width, defaults.width)),
            num_inference_steps=_whole("num_inference_steps", pick(num_inference_steps, defaults.num_inference_steps)),
            guidance_scale=_finite("guidance_scale", pick(guidance_scale, defaults.guidance_scale)),
            shift=_finite("shift", pick(shift, defaults.shift)),
            sampler=pick(sampler, defaults.sampler),
            seed=check_seed(seed, seeds_used) if seed is not None else draw_seed(seeds_used),
            fps=_finite("fps", pick(fps, defaults.fps)),
            negative_prompt=_negative(pick(negative_prompt, defaults.negative_prompt)),
            anchor_first=bool(pick(anchor_first, defaults.anchor_first)), output_type=output_type,
            num_videos_per_prompt=_whole("num_videos_per_prompt", num_videos_per_prompt),
            context_noise=_finite("context_noise", context_noise), geometry=geometry,
            guidance_scale_2=None if defaults.boundary_ratio is None else _finite(
                "guidance_scale_2", pick(guidance_scale_2, pick(guidance_scale, defaults.guidance_scale))))
        request.check()
        request.warn_if_large(defaults)
        return request

    def check(self) -> None:
        """Raise ValueError naming the first bad setting, what was given and what is expected."""
        from vidgen.samplers import SAMPLERS

        g = self.geometry
        if self.num_frames < 1 or (self.num_frames - 1) % g.temporal:
            below = 1 + max(0, (self.num_frames - 1) // g.temporal) * g.temporal
            near = "1" if self.num_frames < 1 else f"{below} or {below + g.temporal}"
            raise ValueError(f"num_frames={self.num_frames} is not 1 + {g.temporal}·k (1, 5, 9, 13, ...); the "
                             f"nearest valid counts are {near}")
        for name, value in (("height", self.height), ("width", self.width)):
            if value < g.multiple or value % g.multiple:
                lo = max(g.multiple, value // g.multiple * g.multiple)
                raise ValueError(f"{name}={value} is not a positive multiple of {g.multiple} (VAE {g.spatial}× and "
                                 f"patch {g.patch}×); try {lo} or {lo + g.multiple}")
        if self.num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {self.num_inference_steps}")
        for name, scale in (("guidance_scale", self.guidance_scale), ("guidance_scale_2", self.guidance_scale_2)):
            if scale is not None and scale < 0:
                raise ValueError(f"{name} must be >= 0 (1 or less disables guidance), got {scale}")
        if self.shift <= 0:
            raise ValueError(f"shift must be > 0 (1 is no shift), got {self.shift}")
        if self.fps <= 0:
            raise ValueError(f"fps must be > 0, got {self.fps:g}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; expected one of {sorted(SAMPLERS)}")
        if self.output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {self.output_type!r}")
        if self.num_videos_per_prompt < 1:
            raise ValueError(f"num_videos_per_prompt must be >= 1, got {self.num_videos_per_prompt}")
        if not 0 <= self.context_noise < 1:
            raise ValueError(f"context_noise must be a noise level σ in [0, 1), got {self.context_noise:g}")

    def warn_if_large(self, defaults: PipelineConfig) -> None:
        """One warning, before the work starts, when a frame is far larger than the model's own."""
        own = defaults.height * defaults.width
        ratio = self.height * self.width / own
        if ratio > SIZE_WARNING_FACTOR:
            times = f"{ratio:.0f}" if ratio >= 10 else f"{ratio:.1f}"
            warnings.warn(f"{self.width}x{self.height} is {times}x the pixels of this "
                          f"model's own size {defaults.width}x{defaults.height}: expect a much slower run (attention "
                          "grows with the square of the token count) and a picture the model was not trained for",
                          stacklevel=3)


def check_seed(seed, seeds_used: int = 1) -> int:
    """`seed` as an int in [0, 2⁶⁴), with room for `seeds_used` consecutive seeds; ValueError otherwise."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be a whole number in [0, 2**64), got {seed!r}")
    seed = int(seed)
    if not 0 <= seed <= SEED_LIMIT - seeds_used:
        extra = f" (this call uses {seeds_used} consecutive seeds from it)" if seeds_used > 1 else ""
        raise ValueError(f"seed must be in [0, 2**64 - {seeds_used}]{extra}, got {seed}")
    return seed


def draw_seed(seeds_used: int = 1) -> int:
    return random.SystemRandom().randrange(2**63 - seeds_used)


def _whole(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    return int(value)


def _finite(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _negative(value) -> str | tuple[str, ...]:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError(f"negative_prompt must be a string or a non-empty list of strings, got {value!r}")


def _size_from_image(image_size: tuple[int, int], height, width, multiple: int) -> tuple[int, int]:
    """A missing height/width from a conditioning image's (H, W), aspect ratio kept, rounded down to `multiple`."""
    h, w = image_size
    if height is None and width is None:
        return max(multiple, h // multiple * multiple), max(multiple, w // multiple * multiple)
    if height is None:
        return max(multiple, round(_whole("width", width) * h / w / multiple) * multiple), width
    return height, max(multiple, round(_whole("height", height) * w / h / multiple) * multiple)
