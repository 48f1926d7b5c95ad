"""VideoPipeline: the one place that joins the text encoder, the DiT and the causal VAE.

prompt → context (B, L, D_text) → sampler over the DiT's velocity from noise (B, C, F, h, w) → latents → streamed VAE
decode → frames (B, T, H, W, 3) in [0, 1]. An image is the T = 1 case of the same path. Frame-to-video is the same
loop with latent frame 0 held clean (σ = 0): conditioning is data (`samplers.CleanFrames`), never a second loop.
Image-to-video models of the channel kind (Wan 2.1 I2V/FLF2V, Wan 2.2 I2V-A14B) get their image as data too: CLIP
tokens beside the text and mask + latents as extra input channels (`velocity.TextContexts`); two-expert models
(Wan 2.2 A14B) are one model function that picks its expert by σ (`velocity.switch_experts`). `pipe.kind` says which
kind a loaded model is (vidgen/model_kind.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from tqdm.auto import tqdm

from vidgen import conditioning
from vidgen.config_io import to_dict
from vidgen.decoding import StreamDecoder
from vidgen.device import check_device
from vidgen.dit.step_cache import StepCache, StepCacheConfig, as_step_cache
from vidgen.files import atomic_folder
from vidgen.flow import sigma_schedule, to_timestep
from vidgen.lora.mixin import LoraLoaderMixin
from vidgen.memory import MemoryOptions, enable_offload, prepare_dit
from vidgen.frame_channels import check_last_image_frames, frame_channels
from vidgen.image_encoder import ImageEncoder
from vidgen.model_folder import OUR_CONFIG, read_model_folder
from vidgen.model_kind import CHANNELS, ModelKind, check_call, detect_kind
from vidgen.pixels import image_size, image_to_tensor, to_unit
from vidgen.request import GenerationRequest, Geometry, PipelineConfig
from vidgen.samplers import StepInfo, get_sampler
from vidgen.text import TextEncoder
from vidgen.velocity import TextContexts, check_step_cache, guided_velocity, switch_experts
from vidgen.video_io import to_uint8

__all__ = ["PipelineConfig", "PipelineOutput", "VideoPipeline", "read_model_folder"]


@dataclass
class PipelineOutput:
    """frames: np float32 (B, T, H, W, 3) in [0, 1]; "pt" the same as a tensor; "pil" a list (B) of lists (T) of
    images; "latent" the final latents (B, C, F, h, w) in the DiT's normalised space. seed: the noise seed used
    (None when latents were given). fps: the model's frames per second (`save_video` uses it).
    step_caches: with step_cache=, the caches of the run, whose computed / skipped counts the DiT forwards."""

    frames: Any
    seed: int | None = None
    step_caches: tuple[StepCache, ...] = ()
    fps: float | None = None


class VideoPipeline(LoraLoaderMixin):
    def __init__(self, dit: torch.nn.Module, vae: torch.nn.Module, text_encoder: TextEncoder,
                 config: PipelineConfig = PipelineConfig(), *, dit_2: torch.nn.Module | None = None,
                 image_encoder: ImageEncoder | None = None, execution_device: torch.device | None = None,
                 offload=None):
        """dit_2: the low-noise expert of a two-expert model (config.boundary_ratio set); image_encoder: the CLIP
        tower of Wan 2.1 I2V/FLF2V. execution_device: where sampling runs when the components' own devices do not
        say (offload); offload: the `vidgen.offload` object that moves weights in and out (`offload.remove()`)."""
        self.dit = dit
        self.dit_2 = dit_2
        self.vae = vae
        self.text_encoder = text_encoder
        self.image_encoder = image_encoder
        self.config = config
        self.execution_device = execution_device
        self.offload = offload
        if (dit_2 is None) != (config.boundary_ratio is None):
            raise ValueError("a two-expert model needs both dit_2 and config.boundary_ratio (and a one-expert model "
                             f"neither); got dit_2={'set' if dit_2 is not None else None}, "
                             f"boundary_ratio={config.boundary_ratio}")
        if (dit.config.image_dim is None) != (image_encoder is None):
            raise ValueError(f"the DiT's image_dim is {dit.config.image_dim} but the image encoder is "
                             f"{'given' if image_encoder is not None else 'missing'}: a DiT with image "
                             "cross-attention needs one, and only such a DiT")

    # --- loading and saving -----------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, folder: str | Path | None = None, *, dtype: torch.dtype | None = None,
                        device: str | torch.device | None = None, vae_dtype: torch.dtype = torch.float32,
                        progress: bool = True, memory: MemoryOptions = MemoryOptions()) -> "VideoPipeline":
        """Load our saved pipeline or a diffusers-format Wan 2.1 T2V folder (or a Hugging Face repository id of one,
        through huggingface_hub's cache); no folder: the embedded default model.

        dtype (DiT and text encoder): default fp32 on CPU, bf16 on CUDA. device: default CUDA when available.
        progress=False silences the weight-loading bars too. memory: offload, fp8 weights, compiled blocks
        (vidgen/memory.py)."""
        from causal_vae import CausalVAE
        from vidgen.dit.model import DiT

        folder, config = read_model_folder(folder, weights=True)
        device = check_device(device)
        check_weight_headers(folder)  # a broken file of any component fails before the first one loads
        dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
        load = torch.device("cpu") if memory.load_device_is_cpu else device

        def load_dit(sub: str):
            return prepare_dit(DiT.from_pretrained(folder / sub, dtype=dtype, device=load), memory, dtype)

        dit = load_dit("transformer")
        dit_2 = load_dit("transformer_2") if (folder / "transformer_2").is_dir() else None
        vae = CausalVAE.from_pretrained(folder / "vae", dtype=vae_dtype, device=load)
        with _loading_bars(progress):
            text = TextEncoder.from_pretrained(folder / "text_encoder", folder / "tokenizer", dtype=dtype,
                                               device=load, max_tokens=dit.config.text_len)
            image = None
            if (folder / "image_encoder").is_dir():
                image = ImageEncoder.from_pretrained(folder / "image_encoder", folder / "image_processor",
                                                     dtype=dtype, device=load)
        offload = enable_offload(memory, text.model, dit, vae, device, dit_2=dit_2,
                                 image_model=None if image is None else image.model)
        return cls(dit, vae, text, config, dit_2=dit_2, image_encoder=image,
                   execution_device=device if offload is not None else None, offload=offload)

    def save_pretrained(self, folder: str | Path, overwrite: bool = False) -> Path:
        """Write the pipeline (vidgen_pipeline.json, transformer/, vae/, text_encoder/, tokenizer/) atomically."""
        folder = Path(folder)
        if folder.exists() and not overwrite:
            raise FileExistsError(f"{folder} already exists; pass overwrite=True to replace it")
        with atomic_folder(folder) as tmp:
            self.dit.save_pretrained(tmp / "transformer")
            if self.dit_2 is not None:
                self.dit_2.save_pretrained(tmp / "transformer_2")
            if self.image_encoder is not None:
                self.image_encoder.save_pretrained(tmp / "image_encoder", tmp / "image_processor")
            self.vae.save_pretrained(tmp / "vae")
            self.text_encoder.save_pretrained(tmp / "text_encoder", tmp / "tokenizer")
            (tmp / OUR_CONFIG).write_text(json.dumps(to_dict(self.config), indent=2) + "\n")
        return folder

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "VideoPipeline":
        """Move all components; `dtype` applies to the DiT and the text encoder (the VAE keeps its own)."""
        if self.offload is not None:
            raise ValueError("this pipeline offloads its weights (memory=MemoryOptions(offload=...)); call "
                             "pipe.offload.remove() before moving it")
        for module in (self.dit, self.dit_2, self.image_encoder and self.image_encoder.model):
            if module is not None:
                module.to(device=device, dtype=dtype)
        self.text_encoder.to(device=device, dtype=dtype)
        self.vae.to(device=device)
        return self

    @property
    def device(self) -> torch.device:
        """Where sampling runs: the execution device under offload, else the DiT's."""
        return self.execution_device or next(self.dit.parameters()).device

    @property
    def geometry(self) -> Geometry:
        return Geometry.of(self.dit, self.vae)

    @property
    def model_kind(self) -> ModelKind:
        """What this model is and which calls it serves (vidgen/model_kind.py)."""
        return detect_kind(self.dit.config, self.config, self.dit_2 is not None, self.vae.config.patch_size)

    @property
    def kind(self) -> str:
        """The model's kind by name: "vidgen", "wan2.1-t2v", "wan2.1-i2v", "wan2.1-flf2v", "wan2.2-ti2v",
        "wan2.2-t2v-a14b" or "wan2.2-i2v-a14b" ("wan-i2v": a one-expert channel model without CLIP tokens)."""
        return self.model_kind.name

    # --- pieces of a call -------------------------------------------------------------------------------------------

    def resolve(self, **settings) -> GenerationRequest:
        """A checked `GenerationRequest` for this model: unset settings are its defaults (see `GenerationRequest`)."""
        return GenerationRequest.resolve(self.config, self.geometry, **settings)

    def encode_prompt(self, prompt: str | list[str]) -> torch.Tensor:
        """Text context (B, L, D_text) on the DiT's device and dtype; reusable as `prompt_embeds=`."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        return self.text_encoder(prompts).to(self.device, _dtype(self.dit))

    def encode_image(self, image, height: int, width: int) -> torch.Tensor:
        """An image (PIL, np (H, W, 3), or tensor (3, H, W); uint8 or float in [0, 1]) → its latent frame
        (1, C, 1, h, w)."""
        return conditioning.encode_context(self.vae, image_to_tensor(image, height, width))  # (1, 3, 1, H, W)

    def decode_latents(self, latents: torch.Tensor, progress: bool = True, parallel=None) -> Iterator[torch.Tensor]:
        """Latents (B, C, F, h, w) → float32 frame chunks (B, t, H, W, 3) in [0, 1], streamed one latent frame at
        a time (1 frame for latent 0, then 4 each), so memory does not grow with the clip length. With a parallel
        context the decode is split over its ranks (vidgen.parallel.generate.decode_stream)."""
        if parallel is None:
            stream = StreamDecoder(self.vae)(latents)
        else:
            from vidgen.parallel.generate import decode_stream

            parts = (latents[:, :, i:i + 1] for i in range(latents.shape[2]))
            stream = (to_unit(p).permute(0, 2, 3, 4, 1) for p in decode_stream(self.vae, parts, parallel))
        with tqdm(total=latents.shape[2], desc="decode", unit="frame", disable=not progress) as bar:
            for frames in stream:  # (B, t, H, W, 3)
                bar.update(1)
                yield frames

    # --- the call ---------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(self, prompt: str | list[str] | None = None, negative_prompt: str | list[str] | None = None,
                 num_frames: int | None = None, height: int | None = None, width: int | None = None,
                 num_inference_steps: int | None = None, guidance_scale: float | None = None,
                 shift: float | None = None, sampler: str | None = None, seed: int | None = None,
                 latents: torch.Tensor | None = None, image=None, video=None, output_type: str = "np",
                 progress: bool = True,
                 prompt_embeds: torch.Tensor | None = None, negative_prompt_embeds: torch.Tensor | None = None,
                 num_videos_per_prompt: int = 1, callback: Callable[[StepInfo], None] | None = None,
                 context_frames: int | None = None, context_noise: float = 0.0,
                 context_latents: torch.Tensor | None = None,
                 step_cache: StepCacheConfig | float | None = None,
                 anchor_first: bool | None = None, parallel=None, batch_guidance: bool = True,
                 generator: torch.Generator | None = None,
                 callback_on_step_end: Callable[..., dict | None] | None = None, last_image=None,
                 guidance_scale_2: float | None = None, clean_anchor: bool = False) -> PipelineOutput:
        """Generate clips (or images, num_frames=1) from prompts; unset sizes and settings come from `self.config`.

        latents: the starting noise (B·n, C, F, h, w) (then `seed` is unused). image: the first frame — held clean
        through sampling (models trained so: `pipe.kind` "vidgen", "wan2.2-ti2v"), or shown to the DiT as mask +
        latent channels and CLIP tokens (Wan's image-to-video models; `last_image`: the last frame too, for
        first-last-frame models). Wan 2.1 text-to-video models refuse image= and video= unless clean_anchor=True.
        guidance_scale_2: the low-noise expert's guidance (two-expert models; default guidance_scale).
        callback(StepInfo) runs after every step; its `i` counts the steps of the whole call.
        Continuation (vidgen/conditioning.py): video= (frames with a leading time axis) → its last `context_frames`
        (1 + 4j, default 5) frames are re-encoded and held clean as the first latent frames of a window of
        `num_frames` (which counts them); only the num_frames − context_frames new frames are returned.
        context_latents= (B or 1, C, F_c, h, w) gives that clean prefix directly, in latent space. context_noise=σ_c
        holds the context at noise level σ_c and tells the DiT so (noise augmentation). With output_type="latent"
        the whole window is returned, context included (clean).
        step_cache: a `StepCacheConfig` (or its threshold) to skip the deeper DiT blocks on steps whose first block
        barely changed (vidgen/dit/step_cache.py); off by default.
        anchor_first (default: the model's `config.anchor_first`): text-to-video as two samplings of `steps` each —
        latent frame 0 alone from the noise's frame 0 (StepInfo.stage "anchor"), then the whole clip from the noise
        with that frame held clean ("clip"). Used only for clips with no image, video or context latents given.
        parallel: a `vidgen.parallel.ParallelContext` (sequence / guidance parallelism, tile-parallel decode).
        batch_guidance: both guidance branches in one forward (faster, twice one branch's activation memory).
        As in diffusers: generator= (a torch.Generator) draws the starting noise instead of seed=;
        callback_on_step_end(pipe, step, timestep, {"latents": x}) runs after every step, and a "latents" entry in
        the dict it returns replaces the latents (a StepInfo callback may return a tensor for the same).
        """
        # Every check before any heavy work.
        if image is not None and video is not None:
            raise ValueError("pass either image= (frame-to-video) or video= (continuation), not both")
        if video is not None:
            video = conditioning.video_to_frames(video)  # a list of frames, each in a form image= takes
        mode = check_call(self.model_kind, image, last_image, video, clean_anchor)
        first = image if image is not None else (conditioning.video_frame(video, -1) if video is not None else None)
        request = self.resolve(
            num_frames=num_frames, height=height, width=width, num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale, shift=shift, sampler=sampler, seed=seed, negative_prompt=negative_prompt,
            anchor_first=anchor_first, output_type=output_type, num_videos_per_prompt=num_videos_per_prompt,
            context_noise=context_noise, guidance_scale_2=guidance_scale_2,
            image_size=None if first is None else image_size(first))
        if last_image is not None:
            image_size(last_image)  # its form and values, before the work
            check_last_image_frames(request.num_frames, request.geometry.temporal)
        if mode == CHANNELS and context_latents is not None:
            raise ValueError(f"this model ({self.kind}) takes its first frame as image=, not context_latents=")
        step_cache = as_step_cache(step_cache)
        check_step_cache(step_cache, parallel)
        context_frames = conditioning.check_context_args(
            image=image, video=video, context_frames=context_frames, context_latents=context_latents,
            context_noise=request.context_noise, num_frames=request.num_frames, temporal=request.geometry.temporal)
        num_prompts = _count_prompts(prompt, prompt_embeds, request.negative_prompt)
        _check_generator(generator, seed, latents)
        shape = request.latent_shape(num_prompts * request.num_videos_per_prompt)
        if latents is not None and tuple(latents.shape) != shape:
            raise ValueError(f"latents have shape {tuple(latents.shape)}; expected {shape} for {shape[0]} video(s) "
                             f"of {request.num_frames} frames at {request.height}x{request.width}")

        texts = self._text_contexts(request, prompt, prompt_embeds, negative_prompt_embeds, num_prompts)
        noise = self._noise(request, shape, latents, generator)
        prefix = None
        if mode == CHANNELS:
            texts = self._image_conditions(texts, request, image, last_image, shape[0])
        elif image is not None:
            prefix = self.encode_image(image, request.height, request.width)
        elif video is not None:
            prefix = conditioning.encode_video_context(self.vae, video, context_frames, request.height, request.width)
        else:
            prefix = context_latents  # clean latent frames (1 or B, C, F_c, h, w), or None
        anchored = request.anchor_first and prefix is None and mode is None and shape[2] > 1
        callbacks = _Callbacks(self, callback, callback_on_step_end)
        out, caches = self._denoise(request, noise, prefix, texts, anchored, parallel=parallel,
                                    batch_guidance=batch_guidance, step_cache=step_cache, callbacks=callbacks,
                                    progress=progress)
        # continuation returns only the new frames (frame-to-video and anchor-first keep their frame 0)
        drop = 0 if image is not None or prefix is None else request.geometry.pixel_frames(prefix.shape[2])
        frames = self._output(request, out, drop, progress, parallel)
        seed_used = None if latents is not None or generator is not None else request.seed
        return PipelineOutput(frames, seed_used, caches, request.fps)

    def _text_contexts(self, request: GenerationRequest, prompt, prompt_embeds, negative_prompt_embeds,
                       num_prompts: int) -> TextContexts:
        """The conditional (and, with guidance, unconditional) context, each prompt's repeated for its videos."""
        n = request.num_videos_per_prompt
        cond = self._per_video(self.encode_prompt(prompt) if prompt_embeds is None else prompt_embeds, n)
        if not request.guided:
            return TextContexts(cond, integer_timesteps=self.config.integer_timesteps)
        if negative_prompt_embeds is None:
            negative = request.negative_prompt
            negative_prompt_embeds = self.encode_prompt([negative] * num_prompts if isinstance(negative, str)
                                                        else list(negative))
        uncond = self._per_video(negative_prompt_embeds, n)
        if uncond.shape != cond.shape:
            raise ValueError(f"negative prompt context {tuple(uncond.shape)} does not match the prompt "
                             f"context {tuple(cond.shape)}")
        return TextContexts(cond, uncond, integer_timesteps=self.config.integer_timesteps)

    def _image_conditions(self, texts: TextContexts, request: GenerationRequest, image, last_image,
                          batch: int) -> TextContexts:
        """The contexts with a channel-kind model's image conditioning: mask + latents (B, T + C, F, h, w) as extra
        input channels, and the image encoder's tokens (B, n·L, D_img) when the model has one."""
        channels = frame_channels(self.vae, image, last_image, request.num_frames, request.height, request.width,
                                  request.geometry.temporal).to(self.device)
        tokens = None
        if self.image_encoder is not None:
            images = [image] if last_image is None else [image, last_image]
            tokens = self.image_encoder(images).to(self.device, _dtype(self.dit)).expand(batch, -1, -1)
        return dataclasses.replace(texts, image=tokens, channels=channels.expand(batch, -1, -1, -1, -1))

    def _per_video(self, embeds: torch.Tensor, n: int) -> torch.Tensor:
        """(P, L, D) prompt contexts → (P·n, L, D), each repeated for its n videos."""
        if embeds.ndim != 3 or embeds.shape[2] != self.dit.config.text_dim:
            raise ValueError(f"prompt embeddings have shape {tuple(embeds.shape)}; expected "
                             f"(B, L, {self.dit.config.text_dim})")
        return embeds.to(self.device, _dtype(self.dit)).repeat_interleave(n, dim=0)

    def _noise(self, request: GenerationRequest, shape: tuple, latents: torch.Tensor | None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """The starting noise (B, C, F, h, w), float32 on the DiT's device: the given latents, drawn from the given
        generator, or from a CPU generator seeded with the request's seed, so a seed gives the same clip on every
        device."""
        if latents is None and generator is not None:
            latents = torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float32)
        if latents is None:
            latents = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(request.seed),
                                  dtype=torch.float32)
        return latents.to(self.device, torch.float32)

    def _denoise(self, request: GenerationRequest, noise: torch.Tensor, prefix: torch.Tensor | None,
                 texts: TextContexts, anchored: bool, *, parallel, batch_guidance: bool,
                 step_cache: StepCacheConfig | None, callbacks: "_Callbacks",
                 progress: bool) -> tuple[torch.Tensor, tuple]:
        """Sample the latents; anchored: latent frame 0 alone first, then the clip with it held clean."""
        sample = get_sampler(request.sampler)
        schedule = sigma_schedule(request.num_inference_steps, request.shift)
        stages = ("anchor", "clip") if anchored else ("clip",)
        total = request.num_inference_steps * len(stages)
        caches: tuple[StepCache, ...] = ()

        def trajectory():  # each sampling run gets its own step caches (each expert its own)
            nonlocal caches
            model, new = guided_velocity(self.dit, texts, request.guidance_scale, parallel=parallel,
                                         batch_guidance=batch_guidance, step_cache=step_cache)
            caches += new
            if self.dit_2 is not None:
                low_noise, new = guided_velocity(self.dit_2, texts, request.guidance_scale_2, parallel=parallel,
                                                 batch_guidance=batch_guidance, step_cache=step_cache)
                caches += new
                model = switch_experts(model, low_noise, self.config.boundary_ratio, texts.integer_timesteps)
            return model

        with tqdm(total=total, desc="denoise", unit="step", disable=not progress) as bar:
            report = callbacks.reporter(bar, request.num_inference_steps, total)
            if anchored:  # (B, C, 1, h, w) from the noise's own frame 0
                prefix = sample(trajectory(), noise[:, :, :1], schedule, clean=None, callback=report("anchor", 0))
            model, clean = trajectory(), None
            if prefix is not None:
                clean = conditioning.hold_context(noise, prefix.to(self.device), request.context_noise)
                model = conditioning.with_context_sigma(model, clean, request.context_noise)
            latents = sample(model, noise, schedule, clean=clean, callback=report("clip", len(stages) - 1))
        if prefix is not None and request.context_noise > 0:
            latents = conditioning.restore_context(latents, prefix)
        return latents, caches

    def _output(self, request: GenerationRequest, latents: torch.Tensor, drop: int, progress: bool, parallel):
        """The latents in the requested output type; `drop` leading pixel frames are left out of decoded frames."""
        if request.output_type == "latent":
            return latents
        frames = torch.cat(list(self.decode_latents(latents, progress, parallel)), dim=1)[:, drop:]  # (B, T, H, W, 3)
        if request.output_type == "pt":
            return frames
        frames = frames.cpu().numpy()
        if request.output_type == "pil":
            from PIL import Image

            return [[Image.fromarray(f) for f in to_uint8(video)] for video in frames]
        return frames


def check_weight_headers(folder: Path) -> None:
    """Every component's safetensors headers read (cheap: no tensor is loaded); WeightsError naming the file."""
    from causal_vae.io import check_safetensors, safetensors_files

    for sub in ("transformer", "transformer_2", "vae", "text_encoder", "image_encoder"):
        if (folder / sub).is_dir():
            for path in safetensors_files(folder / sub):
                check_safetensors(path)


def _count_prompts(prompt, prompt_embeds, negative_prompt) -> int:
    """How many prompts the call has; a clear error for a missing or malformed prompt or negative prompt list."""
    if prompt_embeds is None:
        if prompt is None:
            raise ValueError("pass a prompt (a string or a list of strings), or prompt_embeds")
        if not (isinstance(prompt, str) or (isinstance(prompt, list) and prompt and
                                            all(isinstance(p, str) for p in prompt))):
            raise TypeError(f"prompt must be a string or a non-empty list of strings, got {prompt!r}")
    n = (1 if isinstance(prompt, str) else len(prompt)) if prompt_embeds is None else len(prompt_embeds)
    if not isinstance(negative_prompt, str) and len(negative_prompt) != n:
        raise ValueError(f"got {len(negative_prompt)} negative prompts for {n} prompts; pass one string or one per "
                         "prompt")
    return n


@dataclass(frozen=True)
class _Callbacks:
    """The call's step callbacks: ours (a StepInfo) and diffusers' callback_on_step_end(pipe, step, t, kwargs)."""

    pipe: Any
    on_step: Callable[[StepInfo], torch.Tensor | None] | None = None
    on_step_end: Callable[..., dict | None] | None = None

    def reporter(self, bar, steps: int, total: int):
        """Per stage, the sampler callback that advances the bar and hands the callbacks the step counted over the
        call; a replacement of the latents either returns goes back to the sampler."""
        def report(stage: str, index: int):
            def on_step(info: StepInfo) -> torch.Tensor | None:
                bar.update(1)
                info = dataclasses.replace(info, i=index * steps + info.i, num_steps=total, stage=stage)
                x = self.on_step(info) if self.on_step is not None else None
                if self.on_step_end is not None:
                    kwargs = self.on_step_end(self.pipe, info.i, to_timestep(torch.tensor(info.sigma)),
                                              {"latents": info.x if x is None else x})
                    x = (kwargs or {}).get("latents", x)
                return x
            return on_step
        return report


def _check_generator(generator, seed, latents) -> None:
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if seed is not None or latents is not None:
        raise ValueError("pass one of seed=, generator= and latents= (each gives the starting noise)")


@contextlib.contextmanager
def _loading_bars(progress: bool) -> Iterator[None]:
    """transformers' and huggingface_hub's weight-loading bars off inside the block when `progress` is False."""
    if progress:
        yield
        return
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    from transformers.utils import logging as hf_logging

    hub_was_off, hf_was_on = are_progress_bars_disabled(), hf_logging.is_progress_bar_enabled()
    disable_progress_bars()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if not hub_was_off:
            enable_progress_bars()
        if hf_was_on:
            hf_logging.enable_progress_bar()


def _dtype(module: torch.nn.Module) -> torch.dtype:
    return next(module.parameters()).dtype
