"""Clean latent context: a first frame or the end of a video turned into the latent prefix the sampler holds clean.

The causal VAE encodes pixel frame 0 alone (the anchor), then groups of 4, so the last k = 1 + 4j frames of a video
re-encode to a valid latent prefix of 1 + j frames. The sampler keeps those frames fixed (σ = 0, re-imposed after
every step: `samplers.CleanFrames`). With `context_noise = σ_c > 0` they are held at (1 − σ_c)·z + σ_c·ε instead and
the DiT is told σ_c as their timestep: the noise augmentation the model saw in training (train config
`flow.context_sigma_max`), which makes it lean less on small errors in the context.

Sizes: an image or video of another size is scaled to cover the target height × width (aspect ratio kept) and the
overflow is cropped equally on both sides (`pixels.image_to_tensor`). PIL images of any mode (RGBA, L, P, ...)
are converted to RGB; arrays and tensors must already have 3 channels.
"""

from __future__ import annotations

from typing import Callable

import torch

from vidgen.pixels import image_to_tensor, image_to_unit
from vidgen.samplers import CleanFrames

DEFAULT_CONTEXT_FRAMES = 5  # anchor + one group of 4: enough to carry motion, cheap to re-encode


def video_to_frames(video) -> list:
    """Frames with a leading time axis (np (T, H, W, 3), tensor (T, 3, H, W), or a list of images) → a list."""
    if isinstance(video, (list, tuple)):
        frames = list(video)
    elif hasattr(video, "ndim") and video.ndim == 4:
        frames = list(video)
    else:
        raise ValueError("video must be frames with a leading time axis: np (T, H, W, 3), tensor (T, 3, H, W) or a "
                         f"list of images; got {type(video).__name__} {tuple(getattr(video, 'shape', ()))}")
    if not frames:
        raise ValueError("video= has no frames")
    return frames


def video_frame(video, i: int):
    """Frame i (negative counts from the end) of a video as one image in a form `image_to_tensor` takes."""
    frame = video_to_frames(video)[i]
    # A tensor in the pipeline's "pt" output layout (T, H, W, 3) is channels-last; the documented one is (T, 3, H, W).
    if isinstance(frame, torch.Tensor) and frame.shape[0] != 3 and frame.shape[-1] == 3:
        frame = frame.permute(2, 0, 1)
    return frame


def video_to_tensor(video, height: int, width: int, last: int | None = None) -> torch.Tensor:
    """The last `last` frames (all when None) of a video → pixels (1, 3, t, height, width) in [-1, 1]."""
    video = video_to_frames(video)
    n = len(video)
    start = 0 if last is None else n - last
    # each (1, 3, 1, H, W); a size change is stated once, for the first frame
    frames = [image_to_tensor(video_frame(video, i), height, width, notice=i == start) for i in range(start, n)]
    return torch.cat(frames, dim=2)


def default_context_frames(available: int, temporal: int = 4) -> int:
    """DEFAULT_CONTEXT_FRAMES, or the most valid (1 + temporal·j) frames a shorter video holds."""
    return min(DEFAULT_CONTEXT_FRAMES, 1 + (available - 1) // temporal * temporal)


def check_context_frames(context_frames: int, available: int, num_frames: int, temporal: int = 4) -> None:
    """Raise a clear error unless 1 + temporal·j context frames fit in the video and leave frames to generate."""
    if isinstance(context_frames, bool) or not isinstance(context_frames, int):
        raise TypeError(f"context_frames must be an int, got {context_frames!r}")
    if context_frames < 1 or (context_frames - 1) % temporal:
        below = 1 + max(0, (context_frames - 1) // temporal) * temporal
        raise ValueError(f"context_frames={context_frames} is not 1 + {temporal}·j (1, 5, 9, ...): the causal VAE "
                         f"re-encodes them as an anchor frame plus groups of {temporal}; try {below} or "
                         f"{below + temporal}")
    if context_frames > available:
        raise ValueError(f"context_frames={context_frames} but the video has only {available} frame(s); pass at "
                         f"most {1 + (available - 1) // temporal * temporal} (a valid count the video holds)")
    if context_frames >= num_frames:
        raise ValueError(f"context_frames={context_frames} leaves nothing to generate in a window of "
                         f"num_frames={num_frames}; num_frames counts the context too, so pass at least "
                         f"{context_frames + temporal}")


def check_context_args(*, image, video, context_frames: int | None, context_latents: torch.Tensor | None,
                       context_noise: float, num_frames: int, temporal: int = 4) -> int | None:
    """Validate the conditioning arguments of one pipeline call (cheap, before any heavy work).

    Returns the number of context pixel frames to take from `video` (None without a video).
    """
    given = [name for name, v in (("image", image), ("video", video), ("context_latents", context_latents))
             if v is not None]
    if len(given) > 1:
        raise ValueError(f"pass at most one of image=, video= and context_latents=, got {' and '.join(given)}")
    if not (isinstance(context_noise, (int, float)) and 0 <= context_noise < 1):
        raise ValueError(f"context_noise must be a noise level σ in [0, 1), got {context_noise!r}")
    if context_frames is not None and video is None:
        raise ValueError("context_frames= needs video= (the frames to continue)")
    if context_latents is not None:
        if not isinstance(context_latents, torch.Tensor) or context_latents.ndim != 5:
            raise ValueError("context_latents must be a latent tensor (B, C, F_c, h, w), got "
                             f"{type(context_latents).__name__} {tuple(getattr(context_latents, 'shape', ()))}")
        if context_latents.shape[2] >= 1 + (num_frames - 1) // temporal:
            raise ValueError(f"context_latents hold {context_latents.shape[2]} latent frames, which leaves nothing "
                             f"to generate in num_frames={num_frames} ({1 + (num_frames - 1) // temporal} latent "
                             "frames)")
    if video is None:
        return None
    available = len(video_to_frames(video))
    k = default_context_frames(available, temporal) if context_frames is None else context_frames
    check_context_frames(k, available, num_frames, temporal)
    for i in range(available - k, available):  # the frames that will be used: forms and value ranges
        image_to_unit(video_frame(video, i))
    return k


def encode_video_context(vae, video, context_frames: int, height: int, width: int) -> torch.Tensor:
    """The last `context_frames` (1 + 4j) frames of `video` → clean latents (1, C, 1 + j, h, w), float32."""
    return encode_context(vae, video_to_tensor(video, height, width, last=context_frames))


def encode_context(vae, pixels: torch.Tensor) -> torch.Tensor:
    """Pixels (1, 3, 1 + 4j, H, W) in [-1, 1] → clean context latents (1, C, 1 + j, h, w), float32: the one path
    from frames to a clean prefix (first frames, continuation, long-video hand-over)."""
    return vae.encode(pixels.to(vae.device, vae.dtype)).float()


def hold_context(noise: torch.Tensor, context: torch.Tensor, context_noise: float = 0.0) -> CleanFrames:
    """CleanFrames for sampling from `noise` (B, C, F, h, w) with `context` (1 or B, C, F_c, h, w) as its first F_c
    latent frames; with σ_c = context_noise > 0 the context is held at (1 − σ_c)·z + σ_c·ε, ε the noise's own first
    F_c frames (otherwise unused, so the result stays a function of the seed)."""
    b, c, f, h, w = noise.shape
    fc = context.shape[2]
    # F_c = F is allowed: an image from an image (num_frames=1 with image=) generates nothing new.
    if context.shape[0] not in (1, b) or context.shape[1] != c or tuple(context.shape[3:]) != (h, w) or fc > f:
        raise ValueError(f"context latents {tuple(context.shape)} do not fit a clip of latents {tuple(noise.shape)}: "
                         f"expected (1 or {b}, {c}, F_c <= {f}, {h}, {w})")
    held = noise.clone()
    z = context.to(noise.device, noise.dtype).expand(b, -1, -1, -1, -1)
    held[:, :, :fc] = (1 - context_noise) * z + context_noise * noise[:, :, :fc]
    return CleanFrames.prefix(held, fc)


def with_context_sigma(model_fn: Callable, clean: CleanFrames, context_noise: float) -> Callable:
    """The model with σ_c (instead of 0) as the timestep of the context frames; `model_fn` itself when σ_c = 0."""
    if context_noise == 0:
        return model_fn

    def model(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if sigma.ndim == 2:  # (B, F): the sampler marks context frames with σ = 0
            sigma = sigma.masked_fill(clean.mask.to(sigma.device), context_noise)
        return model_fn(x, sigma)

    return model


def restore_context(latents: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """The sampled latents (B, C, F, h, w) with their first F_c frames set back to the clean context (undoing the
    context noise), so decoding primes the VAE's cache with the real context."""
    out = latents.clone()
    out[:, :, :context.shape[2]] = context.to(latents.device, latents.dtype)
    return out
