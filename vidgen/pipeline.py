"""VideoPipeline: the one place that joins the text encoder, the DiT and the causal VAE.

prompt → context (B, L, D_text) → sampler over the DiT's velocity from noise (B, C, F, h, w) → latents → streamed VAE
decode → frames (B, T, H, W, 3) in [0, 1]. An image is the T = 1 case of the same path. Frame-to-video is the same
loop with latent frame 0 held clean (σ = 0): conditioning is data (`samplers.CleanFrames`), never a second loop.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from tqdm.auto import tqdm

from vidgen import conditioning
from vidgen.conditioning import video_to_frames
from vidgen.config_io import from_dict, to_dict
from vidgen.dit.step_cache import StepCache, StepCacheConfig, as_step_cache
from vidgen.flow import sigma_schedule, to_timestep
from vidgen.checks import check_generation_args
from vidgen.model_folder import DEFAULT_MODEL_DIR, OUR_CONFIG, find_model_folder, read_diffusers_pipeline
from vidgen.files import atomic_folder
from vidgen.samplers import StepInfo, cfg, get_sampler
from vidgen.text import TextEncoder


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


@dataclass
class PipelineOutput:
    """frames: np float32 (B, T, H, W, 3) in [0, 1]; "pt" the same as a tensor; "pil" a list (B) of lists (T) of
    images; "latent" the final latents (B, C, F, h, w) in the DiT's normalised space. seed: the noise seed used.
    step_caches: with step_cache=, the caches of the run (one per guidance branch, or one for batched branches),
    whose computed / skipped count the DiT forwards."""

    frames: Any
    seed: int | None = None
    step_caches: tuple[StepCache, ...] = ()


def read_model_folder(folder: str | Path | None) -> tuple[Path, PipelineConfig]:
    """Check a model folder (None: the embedded default) and read its generation defaults, without loading weights."""
    if folder is None:
        folder = DEFAULT_MODEL_DIR
        if not (folder / OUR_CONFIG).is_file():
            raise FileNotFoundError(
                f"the embedded default model is not installed (looked for {folder / OUR_CONFIG}); pass a model "
                "folder instead, e.g. VideoPipeline.from_pretrained('Wan2.1-T2V-1.3B-Diffusers') or --model DIR")
    folder, kind = find_model_folder(folder)
    if kind == "vidgen":
        return folder, from_dict(PipelineConfig, folder / OUR_CONFIG)
    return folder, PipelineConfig(shift=read_diffusers_pipeline(folder)["shift"])


class VideoPipeline:
    def __init__(self, dit: torch.nn.Module, vae: torch.nn.Module, text_encoder: TextEncoder,
                 config: PipelineConfig = PipelineConfig()):
        self.dit = dit
        self.vae = vae
        self.text_encoder = text_encoder
        self.config = config
        # Both guidance branches in one forward: faster, at twice the activation memory of one branch.
        self.batch_guidance = True
        # A vidgen.parallel.ParallelContext: sequence/guidance parallelism and tile-parallel decode over its ranks.
        self.parallel = None

    # --- loading and saving -----------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, folder: str | Path | None = None, *, dtype: torch.dtype | None = None,
                        device: str | torch.device | None = None,
                        vae_dtype: torch.dtype = torch.float32) -> "VideoPipeline":
        """Load our saved pipeline or a diffusers-format Wan 2.1 T2V folder; no folder: the embedded default model.

        dtype (DiT and text encoder): default fp32 on CPU, bf16 on CUDA. device: default CUDA when available.
        """
        from causal_vae import CausalVAE
        from vidgen.dit.model import DiT

        folder, config = read_model_folder(folder)
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
        dit = DiT.from_pretrained(folder / "transformer", dtype=dtype, device=device)
        vae = CausalVAE.from_pretrained(folder / "vae", dtype=vae_dtype, device=device)
        text = TextEncoder.from_pretrained(folder / "text_encoder", folder / "tokenizer", dtype=dtype, device=device,
                                           max_tokens=dit.config.text_len)
        return cls(dit, vae, text, config)

    def save_pretrained(self, folder: str | Path, overwrite: bool = False) -> Path:
        """Write the pipeline (vidgen_pipeline.json, transformer/, vae/, text_encoder/, tokenizer/) atomically."""
        folder = Path(folder)
        if folder.exists() and not overwrite:
            raise FileExistsError(f"{folder} already exists; pass overwrite=True to replace it")
        with atomic_folder(folder) as tmp:
            self.dit.save_pretrained(tmp / "transformer")
            self.vae.save_pretrained(tmp / "vae")
            self.text_encoder.save_pretrained(tmp / "text_encoder", tmp / "tokenizer")
            (tmp / OUR_CONFIG).write_text(json.dumps(to_dict(self.config), indent=2) + "\n")
        return folder

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "VideoPipeline":
        """Move all components; `dtype` applies to the DiT and the text encoder (the VAE keeps its own)."""
        self.dit.to(device=device, dtype=dtype)
        self.text_encoder.to(device=device, dtype=dtype)
        self.vae.to(device=device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.dit.parameters()).device

    # --- pieces of a call -------------------------------------------------------------------------------------------

    def encode_prompt(self, prompt: str | list[str]) -> torch.Tensor:
        """Text context (B, L, D_text) on the DiT's device and dtype; reusable as `prompt_embeds=`."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        return self.text_encoder(prompts).to(self.device, _dtype(self.dit))

    def _per_video(self, embeds: torch.Tensor, n: int) -> torch.Tensor:
        """(P, L, D) prompt contexts → (P·n, L, D), each repeated for its n videos."""
        if embeds.ndim != 3 or embeds.shape[2] != self.dit.config.text_dim:
            raise ValueError(f"prompt embeddings have shape {tuple(embeds.shape)}; expected "
                             f"(B, L, {self.dit.config.text_dim})")
        return embeds.to(self.device, _dtype(self.dit)).repeat_interleave(n, dim=0)

    def encode_image(self, image, height: int, width: int) -> torch.Tensor:
        """An image (PIL, np (H, W, 3), or tensor (3, H, W) in [0, 1]) → its latent frame (1, C, 1, h, w)."""
        pixels = image_to_tensor(image, height, width)  # (1, 3, 1, H, W) in [-1, 1]
        return self.vae.encode(pixels.to(self.vae.device, _dtype(self.vae))).float()

    def decode_latents(self, latents: torch.Tensor, progress: bool = True) -> Iterator[torch.Tensor]:
        """Latents (B, C, F, h, w) → float32 frame chunks (B, t, H, W, 3) in [0, 1], streamed one latent frame at
        a time (1 frame for latent 0, then 4 each), so memory does not grow with the clip length."""
        vae_dtype = _dtype(self.vae)
        parts = (latents[:, :, i:i + 1].to(self.vae.device, vae_dtype) for i in range(latents.shape[2]))
        bar = tqdm(total=latents.shape[2], desc="decode", unit="frame", disable=not progress)
        with bar:
            if self.parallel is None:
                stream = self.vae.stream_decode(parts)
            else:
                from vidgen.parallel.generate import decode_stream

                stream = decode_stream(self.vae, parts, self.parallel)
            for pixels in stream:  # (B, 3, t, H, W) in [-1, 1]
                bar.update(1)
                yield ((pixels.float() + 1) / 2).clamp(0, 1).permute(0, 2, 3, 4, 1)

    # --- the call ---------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(self, prompt: str | list[str] | None = None, negative_prompt: str | list[str] | None = None,
                 num_frames: int | None = None, height: int | None = None, width: int | None = None,
                 num_inference_steps: int | None = None, guidance_scale: float | None = None,
                 shift: float | None = None, sampler: str = "euler", seed: int | None = None,
                 latents: torch.Tensor | None = None, image=None, video=None, output_type: str = "np",
                 progress: bool = True,
                 prompt_embeds: torch.Tensor | None = None, negative_prompt_embeds: torch.Tensor | None = None,
                 num_videos_per_prompt: int = 1, callback: Callable[[StepInfo], None] | None = None,
                 context_frames: int | None = None, context_noise: float = 0.0,
                 context_latents: torch.Tensor | None = None,
                 step_cache: StepCacheConfig | float | None = None,
                 anchor_first: bool | None = None) -> PipelineOutput:
        """Generate clips (or images, num_frames=1) from prompts; unset sizes and settings come from `self.config`.

        latents: the starting noise (B·n, C, F, h, w) (then `seed` is unused). image: the first frame, held clean
        through sampling. callback(StepInfo) runs after every step.
        Continuation (vidgen/conditioning.py): video= (frames with a leading time axis) → its last `context_frames`
        (1 + 4j, default 5) frames are re-encoded and held clean as the first latent frames of a window of
        `num_frames` (which counts them); only the num_frames − context_frames new frames are returned.
        context_latents= (B or 1, C, F_c, h, w) gives that clean prefix directly, in latent space. context_noise=σ_c
        holds the context at noise level σ_c and tells the DiT so (noise augmentation). With output_type="latent"
        the whole window is returned, context included (clean).
        step_cache: a `StepCacheConfig` (or its threshold) to skip the deeper DiT blocks on steps whose first block
        barely changed (vidgen/dit/step_cache.py); off by default.
        anchor_first (default: the model's `config.anchor_first`): text-to-video as two samplings of `steps` each —
        latent frame 0 alone from the noise's frame 0, then the whole clip from the noise with that frame held clean.
        Used only for clips with no image, video or context latents given.
        """
        if image is not None and video is not None:
            raise ValueError("pass either image= (frame-to-video) or video= (continuation), not both")
        if video is not None:
            video = video_to_frames(video)  # a list of frames, each in a form image= takes
        c = self.config
        num_frames = c.num_frames if num_frames is None else num_frames
        if (image is not None or video is not None) and (height is None or width is None):
            # frame-to-video, continuation: the (last) frame's size by default
            first = image if image is not None else conditioning.video_frame(video, -1)
            height, width = size_for_image(first, height, width)
        height = c.height if height is None else height
        width = c.width if width is None else width
        steps = c.num_inference_steps if num_inference_steps is None else num_inference_steps
        guidance = c.guidance_scale if guidance_scale is None else guidance_scale
        shift = c.shift if shift is None else shift
        anchor_first = c.anchor_first if anchor_first is None else anchor_first
        negative_prompt = c.negative_prompt if negative_prompt is None else negative_prompt
        # Every check before any heavy work.
        check_generation_args(num_frames, height, width, steps, guidance, shift, sampler, output_type,
                              multiple=self.vae.config.spatial_compression * self.dit.config.patch_size[1],
                              temporal=self.vae.config.temporal_compression)
        sample = get_sampler(sampler)
        step_cache = as_step_cache(step_cache)
        if step_cache is not None and self.parallel is not None and self.parallel.sp_size > 1:
            raise ValueError("step_cache is not supported with sequence parallelism (parallel.sp_size > 1)")
        caches: list[StepCache] = []

        def new_cache() -> StepCache | None:  # one per model branch: a cache never mixes two trajectories
            if step_cache is None:
                return None
            caches.append(StepCache(step_cache))
            return caches[-1]
        context_frames = conditioning.check_context_args(
            image=image, video=video, context_frames=context_frames, context_latents=context_latents,
            context_noise=context_noise, num_frames=num_frames, temporal=self.vae.config.temporal_compression)
        if prompt_embeds is None:
            if prompt is None:
                raise ValueError("pass a prompt (a string or a list of strings), or prompt_embeds")
            if not (isinstance(prompt, str) or (isinstance(prompt, list) and prompt and
                                                all(isinstance(p, str) for p in prompt))):
                raise TypeError(f"prompt must be a string or a non-empty list of strings, got {prompt!r}")
        if num_videos_per_prompt < 1:
            raise ValueError(f"num_videos_per_prompt must be >= 1, got {num_videos_per_prompt}")
        num_prompts = (1 if isinstance(prompt, str) else len(prompt)) if prompt_embeds is None else len(prompt_embeds)
        batch = num_prompts * num_videos_per_prompt
        t_comp, s_comp = self.vae.config.temporal_compression, self.vae.config.spatial_compression
        shape = (batch, self.dit.config.in_dim, 1 + (num_frames - 1) // t_comp, height // s_comp, width // s_comp)
        if latents is not None and tuple(latents.shape) != shape:
            raise ValueError(f"latents have shape {tuple(latents.shape)}; expected {shape} for {batch} video(s) of "
                             f"{num_frames} frames at {height}x{width}")
        if not isinstance(negative_prompt, str) and len(negative_prompt) != num_prompts:
            raise ValueError(f"got {len(negative_prompt)} negative prompts for {num_prompts} prompts; pass one string "
                             "or one per prompt")

        # Text context, computed once for the whole call.
        if prompt_embeds is None:
            prompt_embeds = self.encode_prompt(prompt)
        context = self._per_video(prompt_embeds, num_videos_per_prompt)
        if guidance > 1 and negative_prompt_embeds is None:
            negs = [negative_prompt] * num_prompts if isinstance(negative_prompt, str) else list(negative_prompt)
            negative_prompt_embeds = self.encode_prompt(negs)
        uncond_context = self._per_video(negative_prompt_embeds, num_videos_per_prompt) if guidance > 1 else None
        if uncond_context is not None and uncond_context.shape != context.shape:
            raise ValueError(f"negative prompt context {tuple(uncond_context.shape)} does not match the prompt "
                             f"context {tuple(context.shape)}")
        cfg_parallel_on = self.parallel is not None and self.parallel.cfg_size > 1
        batched = guidance > 1 and self.batch_guidance and not cfg_parallel_on

        def guided_model() -> Callable:
            """The (guided) velocity of one sampling trajectory, with its own step caches."""
            model = self._velocity(context, None if batched else new_cache())  # batched: only for both branches
            if guidance <= 1:
                return model
            if cfg_parallel_on:
                from vidgen.parallel.guidance import cfg_parallel

                return cfg_parallel(model, self._velocity(uncond_context, new_cache()), guidance, self.parallel)
            if batched:
                both = self._velocity_both(context, uncond_context, new_cache())
                return cfg(model, self._velocity(uncond_context), guidance, model_both=both)
            return cfg(model, self._velocity(uncond_context, new_cache()), guidance)

        # Noise (from a CPU generator, so a seed gives the same clip on every device) and clean context frames.
        if latents is None:
            seed = random.SystemRandom().randrange(2**63) if seed is None else seed
            latents = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)
        else:
            seed = None
        latents = latents.to(self.device, torch.float32)
        clean, prefix = None, context_latents  # prefix: clean latent frames (1 or B, C, F_c, h, w)
        if image is not None:
            prefix = self.encode_image(image, height, width)
        elif video is not None:
            prefix = conditioning.encode_video_context(self.vae, video, context_frames, height, width)
        anchored = anchor_first and prefix is None and shape[2] > 1
        schedule = sigma_schedule(steps, shift)
        bar = tqdm(total=steps * (1 + anchored), desc="denoise", unit="step", disable=not progress)

        def on_step(info: StepInfo):
            bar.update(1)
            if callback is not None:
                callback(info)

        with bar:
            if anchored:  # latent frame 0 alone first: (B, C, 1, h, w) from the noise's own frame 0
                prefix = sample(guided_model(), latents[:, :, :1], schedule, clean=None, callback=on_step)
            model = guided_model()
            if prefix is not None:
                clean = conditioning.hold_context(latents, prefix.to(self.device), context_noise)
                model = conditioning.with_context_sigma(model, clean, context_noise)
            latents = sample(model, latents, schedule, clean=clean, callback=on_step)
        if prefix is not None and context_noise > 0:
            latents = conditioning.restore_context(latents, prefix)

        caches = tuple(caches)
        if output_type == "latent":
            return PipelineOutput(latents, seed, caches)
        frames = torch.cat(list(self.decode_latents(latents, progress)), dim=1)  # (B, T, H, W, 3)
        if image is None and prefix is not None and not anchored:  # continuation: only the new frames
            frames = frames[:, conditioning.pixel_frames_of(prefix.shape[2], t_comp):]
        if output_type == "pt":
            return PipelineOutput(frames, seed, caches)
        frames = frames.cpu().numpy()
        if output_type == "pil":
            from PIL import Image

            frames = [[Image.fromarray((f * 255 + 0.5).astype("uint8")) for f in video] for video in frames]
        return PipelineOutput(frames, seed, caches)

    def _velocity(self, context: torch.Tensor,
                  step_cache: StepCache | None = None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The DiT as a sampler model: (x (B, C, F, h, w), σ (B,) or (B, F)) → v, float32."""
        dtype = _dtype(self.dit)

        kwargs = {} if self.parallel is None else {"parallel": self.parallel}
        if step_cache is not None:
            kwargs["step_cache"] = step_cache

        def model(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            return self.dit(x.to(dtype), to_timestep(sigma), context, **kwargs).float()

        return model

    def _velocity_both(self, cond: torch.Tensor, uncond: torch.Tensor, step_cache: StepCache | None = None):
        """Both guidance branches in one batched forward: → (v_cond, v_uncond)."""
        dtype = _dtype(self.dit)
        both = torch.cat([cond, uncond])  # (2B, L, D)
        kwargs = {} if self.parallel is None else {"parallel": self.parallel}
        if step_cache is not None:
            kwargs["step_cache"] = step_cache

        def model(x: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            v = self.dit(torch.cat([x, x]).to(dtype), to_timestep(torch.cat([sigma, sigma])), both, **kwargs).float()
            return v.chunk(2)

        return model


def _dtype(module: torch.nn.Module) -> torch.dtype:
    return next(module.parameters()).dtype


def size_for_image(image, height: int | None, width: int | None) -> tuple[int, int]:
    """Fill in a missing height/width from the image, keeping its aspect ratio, rounded down to multiples of 16."""
    h, w = image_to_tensor(image).shape[-2:]
    if height is None and width is None:
        return h // 16 * 16, w // 16 * 16
    if height is None:
        return max(16, round(width * h / w / 16) * 16), width
    return height, max(16, round(height * w / h / 16) * 16)


def image_to_tensor(image, height: int | None = None, width: int | None = None) -> torch.Tensor:
    """An image → (1, 3, 1, H', W') in [-1, 1]; with a target size, center-cropped to its aspect ratio and resized.

    Accepted: a file path, a PIL image, a numpy array (H, W, 3) uint8 or float in [0, 1], a tensor (3, H, W) uint8 or
    float in [0, 1]."""
    import numpy as np

    if isinstance(image, (str, Path)):
        from PIL import Image

        if not Path(image).is_file():
            raise FileNotFoundError(f"image file not found: {image}")
        with Image.open(image) as im:
            image = im.convert("RGB")
    if hasattr(image, "convert"):  # PIL
        image = np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image array must be (H, W, 3), got {image.shape}")
        image = torch.from_numpy(image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else
                                 image.astype(np.float32)).permute(2, 0, 1)
    if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.shape[0] != 3:
        raise ValueError("image must be a PIL image, a numpy array (H, W, 3) or a tensor (3, H, W); got "
                         f"{type(image).__name__} {tuple(getattr(image, 'shape', ()))}")
    x = (image.float() / 255 if image.dtype == torch.uint8 else image.float())[None]  # (1, 3, H, W) in [0, 1]
    if not torch.isfinite(x).all():
        raise ValueError("image has non-finite values (NaN or inf); expected pixel values in [0, 1]")
    if height is not None and width is not None and tuple(x.shape[-2:]) != (height, width):
        h, w = x.shape[-2:]
        scale = max(height / h, width / w)  # cover the target, then crop the overflow equally on both sides
        new_h, new_w = max(height, round(h * scale)), max(width, round(w * scale))
        x = torch.nn.functional.interpolate(x, size=(new_h, new_w), mode="bilinear", antialias=True,
                                            align_corners=False)
        top, left = (new_h - height) // 2, (new_w - width) // 2
        x = x[:, :, top:top + height, left:left + width]
    return (x.clamp(0, 1) * 2 - 1)[:, :, None]  # (1, 3, 1, H, W)
