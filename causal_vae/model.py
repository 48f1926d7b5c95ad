"""CausalVAE: Wan's causal 3D VAE (2.1, and 2.2 with `residual`/`patch_size`) with a first-frame anchor, streaming
encode/decode and an explicit temporal cache.

Pixel video (B, 3, 1+4k, H, W) in [-1, 1]  <->  latent (B, z_dim, 1+k, H/s, W/s), normalised by the latent mean/std,
s = `config.spatial_compression` (8 for Wan 2.1, 16 for Wan 2.2). Encoding runs frame 0 alone, then groups of 4
frames; decoding runs one latent frame at a time. Every layer is causal in time, so each step needs only the cache of
the previous ones, and a stream of any length runs in bounded memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import torch
from torch import nn

from causal_vae.cache import TemporalCache, assign_slots
from causal_vae.config import VAEConfig
from causal_vae.layers import CausalConv3d, Downsample, MidBlock, ResidualBlock, RMSNorm, States, Upsample
from causal_vae.residual import ResidualDownBlock, ResidualUpBlock, patchify, unpatchify


class Encoder(nn.Module):
    """(B, 3·p², t, H, W) -> (B, 2·z_dim, t', H/8, W/8): (patched) pixels to posterior moments, before `quant_conv`."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        dims = [cfg.base_dim * m for m in (1, *cfg.dim_mult)]
        self.conv_in = CausalConv3d(cfg.pixel_channels, dims[0], 3)
        blocks: list[nn.Module] = []
        for level, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
            if cfg.residual:  # one block per level (Wan 2.2)
                down = None
                if level < len(cfg.dim_mult) - 1:
                    down = "3d" if cfg.temporal_downsample[level] else "2d"
                blocks.append(ResidualDownBlock(in_dim, out_dim, cfg, down))
                continue
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResidualBlock(in_dim, out_dim, cfg.dropout))
                in_dim = out_dim
            if level < len(cfg.dim_mult) - 1:
                blocks.append(Downsample(out_dim, temporal=cfg.temporal_downsample[level]))
        self.down_blocks = nn.ModuleList(blocks)
        self.mid_block = MidBlock(dims[-1], cfg.dropout)
        self.norm_out = RMSNorm(dims[-1])
        self.conv_out = CausalConv3d(dims[-1], 2 * cfg.z_dim, 3)

    def forward(self, x: torch.Tensor, states: States) -> torch.Tensor:
        x = self.conv_in(x, states)
        for block in self.down_blocks:
            x = block(x, states)
        x = self.mid_block(x, states)
        return self.conv_out(self.norm_out(x, silu=True), states)


class UpBlock(nn.Module):
    """num_res_blocks + 1 residual blocks, then an optional upsample: (B, Ci, t, h, w) -> (B, Co or Co/2, t', h', w')."""

    def __init__(self, in_dim: int, out_dim: int, cfg: VAEConfig, upsample: str | None):
        super().__init__()
        self.resnets = nn.ModuleList(
            [ResidualBlock(in_dim if i == 0 else out_dim, out_dim, cfg.dropout) for i in range(cfg.num_res_blocks + 1)]
        )
        self.upsamplers = nn.ModuleList([Upsample(out_dim, temporal=upsample == "3d")]) if upsample else None

    def forward(self, x: torch.Tensor, states: States) -> torch.Tensor:
        for block in self.resnets:
            x = block(x, states)
        return x if self.upsamplers is None else self.upsamplers[0](x, states)


class Decoder(nn.Module):
    """(B, z_dim, t, h, w) -> (B, 3·p², t', 8h, 8w): latents (after `post_quant_conv`) to (patched) pixels,
    unclamped."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        dims = [cfg.decoder_dim * m for m in (cfg.dim_mult[-1], *reversed(cfg.dim_mult))]
        temporal_upsample = tuple(reversed(cfg.temporal_downsample))
        self.conv_in = CausalConv3d(cfg.z_dim, dims[0], 3)
        self.mid_block = MidBlock(dims[0], cfg.dropout)
        blocks = []
        for level, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
            if level > 0 and not cfg.residual:
                in_dim //= 2  # each Wan 2.1 Upsample halves the channels; Wan 2.2's keep them
            upsample = None
            if level < len(cfg.dim_mult) - 1:
                upsample = "3d" if temporal_upsample[level] else "2d"
            blocks.append((ResidualUpBlock if cfg.residual else UpBlock)(in_dim, out_dim, cfg, upsample))
        self.up_blocks = nn.ModuleList(blocks)
        self.norm_out = RMSNorm(dims[-1])
        self.conv_out = CausalConv3d(dims[-1], cfg.out_channels * cfg.patch_size**2, 3)

    def forward(self, z: torch.Tensor, states: States) -> torch.Tensor:
        x = self.conv_in(z, states)
        x = self.mid_block(x, states)
        for block in self.up_blocks:
            x = block(x, states)
        return self.conv_out(self.norm_out(x, silu=True), states)


class CausalVAE(nn.Module):
    """The VAE: `encode`/`decode` and their streaming forms for inference, `posterior`/`decode_raw` for training."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        z = config.z_dim
        self.encoder = Encoder(config)
        self.quant_conv = CausalConv3d(2 * z, 2 * z, 1)
        self.post_quant_conv = CausalConv3d(z, z, 1)
        self.decoder = Decoder(config)
        self.num_encoder_slots = assign_slots(self.encoder)
        self.num_decoder_slots = assign_slots(self.decoder)

    @property
    def dtype(self) -> torch.dtype:
        return self.quant_conv.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.quant_conv.weight.device

    # --- caches and single steps (differentiable) ---------------------------------------------------------------

    def empty_encoder_cache(self) -> TemporalCache:
        return TemporalCache.empty(self.num_encoder_slots)

    def empty_decoder_cache(self) -> TemporalCache:
        return TemporalCache.empty(self.num_decoder_slots)

    def encode_step(self, x: torch.Tensor, cache: TemporalCache) -> tuple[torch.Tensor, TemporalCache]:
        """Pixel frames (B, 3, t, H, W) that continue the stream in `cache` -> raw moments (B, 2·z_dim, t', h, w).

        The first step must start with frame 0; later steps may have any length. t' counts the latent frames that the
        frames seen so far complete (frame 0 alone makes latent 0; every 4 more make one more).
        """
        states = list(cache.states)
        x = patchify(x, self.config.patch_size)  # (B, 3·p², t, H/p, W/p)
        h = self.quant_conv(self.encoder(x, states))
        return h, TemporalCache(tuple(states), cache.frames_in + x.shape[2])

    def decode_step(self, z_raw: torch.Tensor, cache: TemporalCache) -> tuple[torch.Tensor, TemporalCache]:
        """Raw latent frames (B, z_dim, m, h, w) continuing the stream -> unclamped pixels (B, 3, t, s·h, s·w).

        t = 1 + 4(m - 1) on the first step (latent frame 0 makes one pixel frame), 4m afterwards.
        """
        states = list(cache.states)
        x = unpatchify(self.decoder(self.post_quant_conv(z_raw), states), self.config.patch_size)
        return x, TemporalCache(tuple(states), cache.frames_in + z_raw.shape[2])

    # --- training API (differentiable, whole clip in one step) -----------------------------------------------------

    def posterior(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Video (B, 3, 1+4k, H, W) in [-1, 1] -> (mu, logvar), each (B, z_dim, 1+k, H/s, W/s), raw latent space."""
        check_video(video, self.config)
        h, _ = self.encode_step(video.to(self.dtype), self.empty_encoder_cache())
        mu, logvar = h.chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)

    def decode_raw(self, z_raw: torch.Tensor) -> torch.Tensor:
        """Raw latents (B, z_dim, 1+k, h, w) -> pixels (B, 3, 1+4k, s·h, s·w), unclamped (for losses)."""
        check_latents(z_raw, self.config)
        x, _ = self.decode_step(z_raw.to(self.dtype), self.empty_decoder_cache())
        return x

    def latent_stats(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel (mean, std), each (1, z_dim, 1, 1, 1) fp32: built from the config so a bf16 model keeps them exact."""
        stats = torch.tensor([self.config.latents_mean, self.config.latents_std], dtype=torch.float32, device=device)
        return stats[0].view(1, -1, 1, 1, 1), stats[1].view(1, -1, 1, 1, 1)

    def normalize(self, z_raw: torch.Tensor) -> torch.Tensor:
        """Raw latents (B, z_dim, F, h, w) -> the normalised space the DiT works in: (z - mean) / std per channel."""
        mean, std = self.latent_stats(z_raw.device)
        return ((z_raw.float() - mean) / std).to(z_raw.dtype)

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised latents -> raw latents: z * std + mean per channel."""
        mean, std = self.latent_stats(z.device)
        return (z.float() * std + mean).to(z.dtype)

    # --- public inference API ------------------------------------------------------------------------------------

    @torch.no_grad()
    def encode(self, video: torch.Tensor, tiling=None) -> torch.Tensor:
        """Video (B, 3, 1+4k, H, W) in [-1, 1] -> normalised posterior mean (B, z_dim, 1+k, H/s, W/s)."""
        check_video(video, self.config)
        frames = 1 + (video.shape[2] - 1) // self.config.temporal_compression
        return _gather(self.stream_encode([video], tiling=tiling), frames)

    @torch.no_grad()
    def decode(self, z: torch.Tensor, tiling=None) -> torch.Tensor:
        """Normalised latents (B, z_dim, 1+k, h, w) -> video (B, 3, 1+4k, s·h, s·w) in [-1, 1]."""
        check_latents(z, self.config)
        t = 1 + self.config.temporal_compression * (z.shape[2] - 1)
        return _gather(self.stream_decode([z], tiling=tiling), t)

    @torch.no_grad()
    def stream_encode(self, parts: Iterable[torch.Tensor], tiling=None) -> Iterator[torch.Tensor]:
        """Pixel chunks (B, 3, n_i, H, W), any split of 1+4k frames -> normalised latent chunks, each as soon as the
        pixel frames it depends on have arrived (latent j needs frames up to 4j)."""
        from causal_vae.tiling import TiledStep

        step = TiledStep.for_encode(self, tiling)
        group = self.config.temporal_compression
        buffer: torch.Tensor | None = None
        seen = 0
        shape = None
        for i, part in enumerate(parts):
            check_video(part, self.config, where=f"stream_encode part {i}", any_length=True)
            if part.shape[2] == 0:
                continue
            shape = _same_stream_shape(part, shape, f"stream_encode part {i}")
            part = part.to(self.device, self.dtype)
            buffer = part if buffer is None else torch.cat([buffer, part], dim=2)
            while buffer is not None:
                need = 1 if seen == 0 else group  # frame 0 alone, then one latent frame's worth at a time
                if buffer.shape[2] < need:
                    break
                chunk, buffer = buffer[:, :, :need], (buffer[:, :, need:] if buffer.shape[2] > need else None)
                seen += need
                h = step(chunk)
                yield self.normalize(h[:, : self.config.z_dim])
        if seen == 0 and buffer is None:
            raise ValueError("stream_encode got an empty stream; expected chunks of (B, 3, n, H, W) totalling 1+4k frames")
        if buffer is not None:
            total = seen + buffer.shape[2]
            raise ValueError(
                f"stream_encode got {total} frames in all; expected 1+4k (e.g. {seen} or {seen + group}): "
                f"the last {buffer.shape[2]} frame(s) do not complete a latent frame"
            )

    @torch.no_grad()
    def stream_decode(self, parts: Iterable[torch.Tensor], tiling=None) -> Iterator[torch.Tensor]:
        """Normalised latent chunks (B, z_dim, m_i, h, w), any split -> pixel chunks in [-1, 1], one per latent frame
        (1 pixel frame for latent 0, 4 for each later one)."""
        from causal_vae.tiling import TiledStep

        step = TiledStep.for_decode(self, tiling)
        seen = 0
        shape = None
        for i, part in enumerate(parts):
            if isinstance(part, torch.Tensor) and part.dim() == 5 and part.shape[2] == 0:
                continue  # an empty chunk adds nothing, as in stream_encode
            check_latents(part, self.config, where=f"stream_decode part {i}")
            shape = _same_stream_shape(part, shape, f"stream_decode part {i}")
            z = self.denormalize(part.to(self.device, self.dtype))
            for j in range(z.shape[2]):
                seen += 1
                yield step(z[:, :, j : j + 1]).clamp_(-1.0, 1.0)
        if seen == 0:
            raise ValueError("stream_decode got an empty stream; expected chunks of (B, z_dim, m, h, w)")

    # --- weights ------------------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls, path: str | Path, dtype: torch.dtype = torch.float32, device="cpu", config: VAEConfig | None = None
    ) -> "CausalVAE":
        """Load a diffusers AutoencoderKLWan folder, a folder written by `save_pretrained`, `Wan2.1_VAE.pth` or
        `Wan2.2_VAE.pth` (`config` only for a .pth of another size than those)."""
        from causal_vae.io import load_vae

        return load_vae(cls, path, config=config).to(device=device, dtype=dtype).eval()

    def save_pretrained(self, folder: str | Path, overwrite: bool = False) -> Path:
        """Write config.json and model.safetensors into `folder` (atomically; an existing model is kept unless asked)."""
        from causal_vae.io import save_vae

        return save_vae(self, folder, overwrite=overwrite)


def _gather(parts: Iterator[torch.Tensor], total: int) -> torch.Tensor:
    """Copy streamed chunks into one preallocated (B, C, total, H, W) tensor (no growing concatenation)."""
    out, t = None, 0
    for part in parts:
        if out is None:
            out = part.new_empty(*part.shape[:2], total, *part.shape[3:])
        out[:, :, t : t + part.shape[2]] = part
        t += part.shape[2]
    assert out is not None and t == total, (t, total)
    return out


def check_video(x, cfg: VAEConfig, where: str = "video", any_length: bool = False) -> None:
    """Raise a clear error unless x is a finite (B, in_channels, 1+4k, H, W) tensor with H, W multiples of s."""
    s, g = cfg.spatial_compression, cfg.temporal_compression
    expected = f"(B, {cfg.in_channels}, 1+{g}k, H, W) with H and W multiples of {s}, values in [-1, 1]"
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{where}: expected a torch.Tensor {expected}, got {type(x).__name__}")
    if x.dim() != 5:
        raise ValueError(f"{where}: expected a 5D tensor {expected}, got shape {tuple(x.shape)}")
    if x.shape[1] != cfg.in_channels:
        raise ValueError(f"{where}: expected {cfg.in_channels} channels on axis 1 {expected}, got shape {tuple(x.shape)}")
    t, h, w = x.shape[2:]
    if not any_length and (t - 1) % g != 0:
        raise ValueError(f"{where}: {t} frames is not 1+{g}k; expected {expected}. Trim or pad to {1 + g * ((t - 1) // g)} frames")
    if t == 0 and not any_length:
        raise ValueError(f"{where}: no frames; expected {expected}")
    if h % s or w % s or h == 0 or w == 0:
        raise ValueError(f"{where}: height×width {h}×{w} is not a multiple of {s}; expected {expected}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{where}: contains NaN or infinite values")


def check_latents(z, cfg: VAEConfig, where: str = "latents") -> None:
    """Raise a clear error unless z is a finite (B, z_dim, F, h, w) tensor with F ≥ 1."""
    expected = f"(B, {cfg.z_dim}, F, h, w)"
    if not isinstance(z, torch.Tensor):
        raise TypeError(f"{where}: expected a torch.Tensor {expected}, got {type(z).__name__}")
    if z.dim() != 5 or z.shape[1] != cfg.z_dim:
        raise ValueError(f"{where}: expected latents {expected}, got shape {tuple(z.shape)}")
    if 0 in z.shape:
        raise ValueError(f"{where}: empty latents of shape {tuple(z.shape)}; expected {expected} with F, h, w ≥ 1")
    if not torch.isfinite(z).all():
        raise ValueError(f"{where}: contains NaN or infinite values")


def _same_stream_shape(part: torch.Tensor, shape: tuple | None, where: str) -> tuple:
    """The (batch, height, width) every part of a stream must share: set by the first part, checked for the rest."""
    this = (part.shape[0], part.shape[3], part.shape[4])
    if shape is not None and this != shape:
        raise ValueError(f"{where} has batch, height, width {this}, but the stream started with {shape}; "
                         "every part must match")
    return this
