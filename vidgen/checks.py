"""Validation of generation requests, run before anything heavy is loaded or computed (the CLI calls it before
loading the model; the pipeline again with the model's own compression factors)."""

from __future__ import annotations

SPATIAL_MULTIPLE = 16  # VAE 8× · DiT patch 2 (shared/DESIGN.md)
TEMPORAL_COMPRESSION = 4  # T = 1 + 4k pixel frames ⇔ F = 1 + k latent frames
OUTPUT_TYPES = ("np", "pt", "pil", "latent")


def nearest_frame_counts(num_frames: int, temporal: int = TEMPORAL_COMPRESSION) -> list[int]:
    """The valid counts 1 + temporal·k just below and above `num_frames` (one if it is below 1)."""
    below = 1 + max(0, (num_frames - 1) // temporal) * temporal
    above = below + temporal
    return [1] if num_frames < 1 else [below, above]


def check_generation_args(num_frames: int, height: int, width: int, num_inference_steps: int, guidance_scale: float,
                          shift: float = 1.0, sampler: str = "euler", output_type: str = "np", *,
                          multiple: int = SPATIAL_MULTIPLE, temporal: int = TEMPORAL_COMPRESSION) -> None:
    """Raise ValueError naming the bad argument, what was given and what is expected."""
    from vidgen.samplers import SAMPLERS

    for name, value in (("num_frames", num_frames), ("height", height), ("width", width),
                        ("num_inference_steps", num_inference_steps)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {value!r}")
    if num_frames < 1 or (num_frames - 1) % temporal:
        near = " or ".join(str(n) for n in nearest_frame_counts(num_frames, temporal))
        raise ValueError(f"num_frames={num_frames} is not 1 + {temporal}·k (1, 5, 9, 13, ...); "
                         f"the nearest valid counts are {near}")
    for name, value in (("height", height), ("width", width)):
        if value < multiple or value % multiple:
            lo = max(multiple, value // multiple * multiple)
            raise ValueError(f"{name}={value} is not a positive multiple of {multiple} (VAE 8× and patch 2×); "
                             f"try {lo} or {lo + multiple}")
    if num_inference_steps < 1:
        raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
    if guidance_scale < 0:
        raise ValueError(f"guidance_scale must be >= 0 (1 or less disables guidance), got {guidance_scale}")
    if shift <= 0:
        raise ValueError(f"shift must be > 0 (1 is no shift), got {shift}")
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; expected one of {sorted(SAMPLERS)}")
    if output_type not in OUTPUT_TYPES:
        raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
