"""The DiT's training objective: flow matching on VAE latents with clean-prefix conditioning and text dropout.

Randomness comes only from the generator passed in (text dropout, token dropout when on, σ, clean prefix, context σ,
noise, in that order),
which the trainer seeds per micro-batch — so a resumed run draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from vidgen.flow import flow_matching_loss, frame_sigmas, sample_clean_prefix, sample_sigma
from vidgen.train.config import TrainConfig
from vidgen.train.models import load_dit, load_vae, set_gradient_checkpointing


class DiTTask:
    name = "dit"

    def __init__(self, config: TrainConfig, dit: nn.Module, vae: nn.Module | None, text: nn.Module | None):
        self.config, self.dit, self.vae, self.text = config, dit, vae, text
        c = dit.config
        if vae is not None and vae.config.z_dim != c.in_dim:
            raise ValueError(f"the VAE makes {vae.config.z_dim}-channel latents but the DiT takes in_dim={c.in_dim}; "
                             "use a DiT config whose in_dim/out_dim match the VAE's z_dim")
        if text is not None and text.dim != c.text_dim:
            raise ValueError(f"the text encoder is {text.dim} wide but the DiT expects text_dim={c.text_dim}; use a "
                             f"text encoder of width {c.text_dim} or a DiT config with text_dim: {text.dim}")
        if config.data.cache is None and vae is None:
            raise ValueError("task dit on raw media needs a VAE to encode it: set `vae:` (or train from data.cache)")
        if config.train_text_encoder and text is None:
            raise ValueError("train_text_encoder is true but no text_encoder is configured")
        if config.lora is not None:
            _adapt(dit, config)
        set_gradient_checkpointing(dit, config.gradient_checkpointing)
        if vae is not None:
            vae.requires_grad_(False).eval()
        if text is not None:
            text.requires_grad_(config.train_text_encoder)
            text.train(config.train_text_encoder)

    @classmethod
    def build(cls, config: TrainConfig, models: dict | None = None) -> "DiTTask":
        """Networks from the config; `models` (keys dit, vae, text) overrides any of them with ready modules."""
        from vidgen.train.text_conditioner import TextConditioner

        models = models or {}
        dit = models.get("dit") or load_dit(config.model)
        # From a cache, the VAE and a frozen text encoder are only needed to decode and prompt preview clips.
        previews = config.sample_every > 0 and bool(config.sample_prompts)
        need_vae = config.data.cache is None or previews
        vae = models.get("vae") or (load_vae(config.vae) if config.vae and need_vae else None)
        text = models.get("text")
        if text is None and config.text_encoder and (need_vae or config.train_text_encoder):
            text = TextConditioner.from_folder(config.text_encoder, dit.config.text_len)
        return cls(config, dit, vae, text)

    @property
    def factors(self) -> tuple[int, int]:
        """(time, space) granularity of pixel clips: T = 1 + time·k, H and W multiples of space."""
        if self.vae is None:
            return 4, 16
        p = self.dit.config.patch_size
        return self.vae.config.temporal_compression, self.vae.config.spatial_compression * max(p[1], p[2])

    def trainable(self) -> dict[str, nn.Module]:
        out = {"model": self.dit}
        if self.config.train_text_encoder:
            out["text_encoder"] = self.text
        return out

    def to(self, device) -> None:
        for m in (self.vae, self.text):
            if m is not None:
                m.to(device)

    def context(self, modules: dict, batch: dict, gen: torch.Generator, device) -> torch.Tensor:
        """Text context (B, L, D) with captions dropped to "" (or the cached empty-caption embedding) at rate
        `flow.text_dropout`, then single tokens replaced by the empty caption's at rate `flow.token_dropout`."""
        ctx, null = self._context(modules, batch, gen, device)
        p = self.config.flow.token_dropout
        if p > 0:
            drop = (torch.rand(ctx.shape[:2], generator=gen) < p).to(device)  # (B, L)
            ctx = torch.where(drop[:, :, None], null, ctx)
        return ctx

    def _context(self, modules: dict, batch: dict, gen: torch.Generator, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(context (B, L, D) after caption dropout, the empty caption's context (B or 1, L, D))."""
        p = self.config.flow.text_dropout
        if "context" in batch and not self.config.train_text_encoder:  # precomputed
            ctx, null = batch["context"].to(device), batch["null_context"].to(device)
            drop = (torch.rand(ctx.shape[0], generator=gen) < p).to(device)
            return torch.where(drop[:, None, None], null, ctx), null
        captions = list(batch["caption"])
        drop = torch.rand(len(captions), generator=gen) < p
        captions = ["" if d else c for c, d in zip(captions, drop.tolist())]
        if self.text is None:  # unconditional model
            c = self.dit.config
            zeros = torch.zeros(len(captions), c.text_len, c.text_dim, device=device)
            return zeros, zeros
        encode = modules["text_encoder"] if self.config.train_text_encoder else self.text
        with torch.set_grad_enabled(self.config.train_text_encoder and torch.is_grad_enabled()):
            ctx = encode(captions)
            null = encode([""]) if self.config.flow.token_dropout > 0 else ctx
        return ctx, null

    def latents(self, batch: dict, device) -> torch.Tensor:
        if "latent" in batch:
            return batch["latent"].to(device).float()
        with torch.no_grad():
            return self.vae.encode(batch["video"].to(device)).float()  # (B, C, F, h, w)

    def loss(self, modules: dict, batch: dict, gen: torch.Generator, device) -> torch.Tensor:
        f = self.config.flow
        context = self.context(modules, batch, gen, device)
        x0 = self.latents(batch, device)
        b, frames = x0.shape[0], x0.shape[2]
        sigma = sample_sigma(b, f.sigma_sampler, shift=f.shift, mean=f.sigma_mean, std=f.sigma_std, generator=gen)
        prefix = sample_clean_prefix(b, frames, f.prefix_probs, generator=gen)
        sig = frame_sigmas(sigma, prefix, frames)
        if f.context_sigma_max > 0:  # noise augmentation of the context: σ_ctx ~ U(0, max) per sample
            ctx_sigma = torch.rand(b, generator=gen) * f.context_sigma_max
            is_ctx = torch.arange(frames)[None, :] < prefix[:, None]
            sig = torch.where(is_ctx, ctx_sigma[:, None].expand_as(sig), sig)
        noise = torch.randn(x0.shape, generator=gen)
        model = modules["model"]
        return flow_matching_loss(lambda x, t: model(x, t, context), x0, sig.to(device), noise.to(device),
                                  prefix=prefix.to(device))

    def export(self, folder: Path, modules: dict, batches=None, buckets=()) -> None:
        """The trained model in a loadable form: with `lora`, the adapters as one file `lora.safetensors` in the
        diffusers layout (vidgen.lora.export); else, with a VAE and a text encoder at hand, a whole pipeline folder
        (`VideoPipeline.from_pretrained(folder)`; generation defaults from the first video bucket, editable in
        vidgen_pipeline.json); else `transformer/` (+ `text_encoder/`, `tokenizer/` when trained)."""
        dit = modules["model"]
        if self.config.lora is not None:
            from vidgen.lora.export import LORA_FILE, export_lora

            folder.mkdir(parents=True, exist_ok=True)
            export_lora(dit, folder / LORA_FILE, alpha=self.config.lora.alpha, base=self.config.model)
            return
        text = modules.get("text_encoder", self.text)
        if self.vae is None or text is None:
            dit.save_pretrained(folder / "transformer", overwrite=True)
            if "text_encoder" in modules:
                modules["text_encoder"].save_pretrained(folder)
            return
        from vidgen.pipeline import PipelineConfig, VideoPipeline
        from vidgen.text import TextEncoder

        video = next((b for b in buckets if b.frames > 1), None)
        defaults = {}
        if video is not None:
            vc = self.vae.config
            if self.config.data.cache is not None:  # latent bucket -> pixels
                video = type(video)(1 + (video.frames - 1) * vc.temporal_compression,
                                    video.height * vc.spatial_compression, video.width * vc.spatial_compression)
            defaults = {"num_frames": video.frames, "height": video.height, "width": video.width}
        if self.config.data.fps:
            defaults["fps"] = round(self.config.data.fps)
        encoder = TextEncoder(text.encoder, text.tokenizer, max_tokens=text.text_len)
        VideoPipeline(dit, self.vae, encoder, PipelineConfig(**defaults)).save_pretrained(folder, overwrite=True)

    @torch.no_grad()
    def preview(self, folder: Path, step: int, modules: dict, bucket) -> list[Path]:
        """Sample one clip per `sample_prompts` entry at the first video bucket's size through `VideoPipeline` (no
        guidance, Euler, the training flow shift); write mp4s (or png for images).

        Previews use the current weights (not the EMA) and their own seeds, never the training generator."""
        from vidgen.pipeline import PipelineConfig, VideoPipeline
        from vidgen.request import Geometry
        from vidgen.text import TextEncoder
        from vidgen.video_io import save_video

        if self.vae is None or self.text is None:
            return []
        model, text = modules["model"], modules.get("text_encoder", self.text)
        was_training = model.training
        model.eval()
        g = Geometry.of(self.dit, self.vae)
        frames, height, width = bucket.frames, bucket.height, bucket.width
        if self.config.data.cache is not None:  # the cache's buckets are latent (F, h, w)
            frames, height, width = g.pixel_frames(frames), height * g.spatial, width * g.spatial
        encoder = TextEncoder(text.encoder, text.tokenizer, max_tokens=text.text_len)
        pipe = VideoPipeline(model, self.vae, encoder, PipelineConfig(
            num_frames=frames, height=height, width=width, num_inference_steps=self.config.sample_steps,
            guidance_scale=1.0, shift=self.config.flow.shift, fps=self.config.data.fps or 16))
        out = []
        for i, prompt in enumerate(self.config.sample_prompts):
            noise = torch.randn(g.latent_shape(1, frames, height, width), generator=torch.Generator().manual_seed(i))
            video = pipe(prompt, latents=noise, progress=False, anchor_first=False)
            path = folder / f"step{step:08d}-{i}{'.png' if frames == 1 else '.mp4'}"
            out.append(save_video(video, path, overwrite=True))
        model.train(was_training)
        return out


def _adapt(dit: nn.Module, config: TrainConfig) -> None:
    """LoRA adapters on a frozen `dit` (vidgen.lora.train). Under bf16 the frozen linears are stored in bf16 (no fp32
    master copy is needed for weights that never change: half the base's memory); adapters stay fp32."""
    from vidgen.lora.train import inject_lora

    if config.mixed_precision == "bf16":
        for module in dit.blocks.modules():
            if isinstance(module, nn.Linear):
                module.to(torch.bfloat16)
    inject_lora(dit, config.lora)
