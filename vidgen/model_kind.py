"""What a loaded model is, read from its parts, and which calls it can serve.

| kind             | how image= enters                                   | last_image= | image= needed |
|------------------|-----------------------------------------------------|-------------|---------------|
| vidgen           | latent frame 0 held clean at t = 0 (per-frame t)    | no          | no            |
| wan2.2-ti2v      | the same (Wan 2.2 TI2V-5B)                          | no          | no            |
| wan2.1-t2v       | refused unless clean_anchor=True (never trained so) | no          | no            |
| wan2.2-t2v-a14b  | as wan2.1-t2v, two experts                          | no          | no            |
| wan2.1-i2v       | mask + latents as channels, CLIP tokens             | no          | yes           |
| wan2.1-flf2v     | the same, both images' CLIP tokens                  | yes (needed)| yes           |
| wan2.2-i2v-a14b  | mask + latents as channels, two experts             | yes         | yes           |
"""

from __future__ import annotations

from dataclasses import dataclass

CLEAN, CHANNELS = "clean", "channels"  # the two ways an image enters


@dataclass(frozen=True)
class ModelKind:
    name: str
    image: str | None  # CLEAN, CHANNELS, or None (text-to-video only; CLEAN when clean_anchor=True)
    last_image: bool = False  # last_image= is served
    needs_image: bool = False
    needs_last_image: bool = False
    experts: int = 1


def detect_kind(c, config, two_experts: bool = False, vae_patch: int = 1) -> ModelKind:
    """The kind of a pipeline from its DiT's config `c`, its `PipelineConfig`, whether it has a second expert, and its
    VAE's pixel patch (2: the Wan 2.2 VAE of TI2V-5B)."""
    experts = 2 if two_experts else 1
    if c.in_dim != c.out_dim:  # noise + mask + conditioning latents
        if c.image_dim is not None:
            flf = c.image_tokens is not None
            return ModelKind("wan2.1-flf2v" if flf else "wan2.1-i2v", CHANNELS, last_image=flf, needs_image=True,
                             needs_last_image=flf, experts=experts)
        name = "wan2.2-i2v-a14b" if experts == 2 else "wan-i2v"
        return ModelKind(name, CHANNELS, last_image=True, needs_image=True, experts=experts)
    if experts == 2:
        return ModelKind("wan2.2-t2v-a14b", CLEAN if config.clean_frames else None, experts=2)
    if not config.clean_frames:
        return ModelKind("wan2.1-t2v", None)
    return ModelKind("wan2.2-ti2v" if vae_patch > 1 else "vidgen", CLEAN)


def check_call(kind: ModelKind, image, last_image, video, clean_anchor: bool) -> str | None:
    """How this call's image enters (CLEAN, CHANNELS or None); a ValueError, before any work, for a call the model
    cannot serve."""
    if last_image is not None and not kind.last_image:
        raise ValueError(f"this model ({kind.name}) does not take last_image= (--last-image): only first-last-frame "
                         "models (Wan 2.1 FLF2V, Wan 2.2 I2V-A14B) do")
    if kind.image == CHANNELS:
        if video is not None:
            raise ValueError(f"this model ({kind.name}) does not continue videos (video=); it takes image=")
        if image is None or (kind.needs_last_image and last_image is None):
            need = "image= and last_image= (--image, --last-image)" if kind.needs_last_image else "image= (--image)"
            raise ValueError(f"this model ({kind.name}) generates from a first frame: pass {need}")
        return CHANNELS
    if kind.image is None and (image is not None or video is not None) and not clean_anchor:
        what = "image=" if image is not None else "video="
        raise ValueError(f"this model ({kind.name}) was trained for text-to-video only, never to continue clean "
                         f"frames, so {what} is refused; use an image-to-video model, or pass clean_anchor=True "
                         "(--clean-anchor) to try the experimental clean-frame path anyway")
    return CLEAN if image is not None or video is not None else None

