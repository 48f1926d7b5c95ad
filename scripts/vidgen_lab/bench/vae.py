"""CausalVAE vs diffusers' AutoencoderKLWan: encode, decode (one-shot and streamed), a decoder training step, and
streaming memory over length; for Wan 2.1's VAE and for Wan 2.2's (residual levels, 2×2 patches, 48 channels).

Both load the same saved diffusers folder (random weights, every layer perturbed so none is the zero-init identity).
Ours takes and returns normalised latents; the reference gets the same numbers de-normalised.
"""

from __future__ import annotations

import torch

from causal_vae import CausalVAE, VAEConfig
from causal_vae.config import WAN22_LATENTS_MEAN, WAN22_LATENTS_STD
from causal_vae.convert import config_to_diffusers
from vidgen_lab.bench.common import Row, peak_of, rel_diff, time_pair

# Wan 2.1's structure at a third of its width: big enough that per-call overhead does not dominate.
BENCH_CONFIG = VAEConfig(base_dim=32, num_res_blocks=2)
BENCH_VIDEO = (1, 3, 9, 64, 64)
# bf16 Conv3d on a CPU without bf16 units is ~40x slower than fp32: a tiny case, to show it runs and how it compares.
BF16_CONFIG = VAEConfig(base_dim=8, num_res_blocks=1)
BF16_VIDEO = (1, 3, 5, 32, 32)
# Streaming decode into an mp4: memory should not grow with length.
STREAM_CONFIG = VAEConfig(base_dim=8, num_res_blocks=1)
STREAM_SIZE = 128
STREAM_LENGTHS = (8, 64)
# Wan 2.2's structure (Wan2.2-TI2V-5B's VAE: encoder 160, decoder 256 wide) at a fifth of its width, on the same
# pixel clip as Wan 2.1's row (16× in space: 3×4×4 latents). Its decoder is ~2× Wan 2.1's at the same width (its
# levels keep their channels), so the clip is kept small and the training step left out: the part runs in ~2 min.
BENCH22_CONFIG = VAEConfig(base_dim=32, decoder_base_dim=48, z_dim=48, residual=True, patch_size=2,
                           latents_mean=WAN22_LATENTS_MEAN, latents_std=WAN22_LATENTS_STD)
BENCH22_VIDEO = (1, 3, 9, 64, 64)
BENCH22_OPS = ("encode", "decode", "stream decode")
STREAM22_CONFIG = VAEConfig(base_dim=8, decoder_base_dim=12, z_dim=48, num_res_blocks=1, residual=True,
                            patch_size=2, latents_mean=WAN22_LATENTS_MEAN, latents_std=WAN22_LATENTS_STD)
STREAM22_SIZE = 128


def save_reference(cfg: VAEConfig, folder: str, seed: int = 0) -> None:
    """A random diffusers AutoencoderKLWan of `cfg`, saved to `folder`."""
    from diffusers import AutoencoderKLWan

    torch.manual_seed(seed)
    ref = AutoencoderKLWan(**{k: v for k, v in config_to_diffusers(cfg).items() if k != "_class_name"})
    with torch.no_grad():  # Wan zero-initialises some layers; give every one some weight
        for p in ref.parameters():
            p.add_(0.02 * torch.randn_like(p))
    ref.save_pretrained(folder)


def load(impl: str, folder: str, dtype=torch.float32, device="cpu"):
    if impl == "ours":
        return CausalVAE.from_pretrained(folder, dtype=dtype, device=device)
    from diffusers import AutoencoderKLWan
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # its "keep in float32" advice: both are compared as loaded
    return AutoencoderKLWan.from_pretrained(folder).to(device, dtype).eval()


def _stats(cfg: VAEConfig, like: torch.Tensor):
    mean = torch.tensor(cfg.latents_mean, device=like.device).view(1, -1, 1, 1, 1)
    std = torch.tensor(cfg.latents_std, device=like.device).view(1, -1, 1, 1, 1)
    return mean.to(like.dtype), std.to(like.dtype)


def op_fns(impl: str, folder: str, cfg: VAEConfig, video_shape, dtype=torch.float32, device="cpu"):
    """{op: callable} for encode, decode, streamed decode and a decoder training step of one implementation on fixed
    inputs."""
    vae = load(impl, folder, dtype, device)
    torch.manual_seed(0)
    video = (torch.rand(video_shape) * 2 - 1).to(device, dtype)
    b, _, t, h, w = video_shape
    s = cfg.spatial_compression
    z = torch.randn(b, cfg.z_dim, 1 + (t - 1) // cfg.temporal_compression, h // s, w // s).to(device, dtype)
    mean, std = _stats(cfg, z)
    # Raw latents → pixels with gradients, clamped to [-1, 1] as diffusers' decode does, so the gradients compare.
    if impl == "ours":
        def decode_raw(raw):
            return vae.decode_raw(raw).clamp(-1, 1)
    else:
        def decode_raw(raw):
            return vae.decode(raw).sample

    def train_decode():
        """A decoder training step's work: decode recording gradients, backward of a loss; → d loss / d latents."""
        with torch.enable_grad():
            raw = (z * std + mean).requires_grad_(True)
            decode_raw(raw).float().square().mean().backward()
        vae.zero_grad(set_to_none=True)
        return raw.grad

    if impl == "ours":
        def stream():  # one latent frame at a time; each pixel chunk is dropped (a sink)
            for _ in vae.stream_decode(z[:, :, i:i + 1] for i in range(z.shape[2])):
                pass
        return {"encode": lambda: vae.encode(video), "decode": lambda: vae.decode(z), "stream decode": stream,
                "train decode": train_decode}
    return {"encode": lambda: (vae.encode(video).latent_dist.mean - mean) / std,
            "decode": lambda: vae.decode(z * std + mean).sample,
            "stream decode": lambda: vae.decode(z * std + mean).sample,  # no streaming API: one-shot
            "train decode": train_decode}


def op_peak(impl: str, folder: str, op: str, video_shape, device: str) -> float:
    """In a fresh process: peak memory growth of one op, MiB (the model excluded)."""
    cfg = CausalVAE.from_pretrained(folder).config
    return peak_of(op_fns(impl, folder, cfg, video_shape, device=device)[op], torch.device(device))


def bench_ops(folder: str, cfg: VAEConfig, video_shape, dtype_name: str, device, repeats: int, memory,
              label: str, ops: tuple[str, ...] | None = None) -> list[Row]:
    """Rows for `ops` (default: encode, decode, stream decode and a training step; encode and decode only without
    `memory`); `memory(fn, *args)` as in `vidgen_lab.bench.dit.bench_forward`."""
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    ours, ref = op_fns("ours", folder, cfg, video_shape, dtype, device), op_fns("diffusers", folder, cfg,
                                                                              video_shape, dtype, device)
    if ops is None:
        ops = ("encode", "decode", "stream decode", "train decode") if memory is not None else ("encode", "decode")
    with torch.no_grad():
        diffs = {op: rel_diff(ours[op](), ref[op]()) for op in ops if op != "stream decode"}
    diffs["stream decode"] = diffs["decode"]  # chunks of the same decode (tests/test_vae_stream.py)
    fns = {f"{impl} {op}": f[op] for op in ops for impl, f in (("ours", ours), ("diffusers", ref))}
    times = time_pair(fns, device, repeats)
    rows = []
    for op in ops:
        name = {"stream decode": "VAE decode streamed (ours per latent frame; diffusers one-shot)",
                "train decode": "VAE decoder training step (decode with gradients, backward)"}.get(op, f"VAE {op}")
        row = Row(f"{name}, {label}", dtype_name, times[f"ours {op}"], times[f"diffusers {op}"], diffs[op])
        if memory is not None:
            row.ours_mib, row.ref_mib = (memory(op_peak, impl, folder, op, video_shape, str(device))
                                         for impl in ("ours", "diffusers"))
        rows.append(row)
    return rows


def steady_allocator() -> None:
    """Fix glibc's mmap threshold at its default 128 KiB, so every large block freed goes back to the system at once.

    Left dynamic, glibc raises the threshold to the largest block freed so far and serves later blocks of that size
    from its heap, where resident memory then drifts with fragmentation: Wan 2.2's streamed decode at 128×128 (a
    constant live set) drifted between 77 and 196 MiB over 160 latent frames, and stayed at 35-36 MiB with the
    threshold fixed. Peak RSS then measures what a decode holds, for both implementations alike."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, 128 * 1024)  # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass  # not glibc: its allocator's own behaviour is measured


def decode_to_mp4(impl: str, folder: str, latent_frames: int, size: int, out: str) -> float:
    """In a fresh process: decode `latent_frames` latents into an mp4 file; peak RSS growth, MiB."""
    import av

    steady_allocator()
    torch.manual_seed(0)
    vae = load(impl, folder)
    cfg = CausalVAE.from_pretrained(folder).config if impl != "ours" else vae.config
    s = cfg.spatial_compression
    z = torch.randn(1, cfg.z_dim, latent_frames, size // s, size // s)

    def run():
        with av.open(out, "w") as container:
            stream = container.add_stream("mpeg4", rate=16)
            stream.width = stream.height = size
            stream.pix_fmt = "yuv420p"
            parts = vae.stream_decode([z]) if impl == "ours" else [vae.decode(z).sample]
            for part in parts:  # (1, 3, t, H, W) in [-1, 1]
                frames = ((part[0].permute(1, 2, 3, 0) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
                for frame in frames:
                    container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())

    return peak_of(run, torch.device("cpu"))
