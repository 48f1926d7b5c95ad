"""Benchmark CausalVAE against diffusers' AutoencoderKLWan (same config, weights, inputs), and streaming memory.

1. Encode and decode time (alternating, same process) and peak memory of the operation (fresh process each).
   Config: Wan 2.1's structure at a third of its width (base_dim 32, 4 levels, 2 residual blocks), a 9-frame 64×64 clip:
   big enough that per-call overhead does not dominate, small enough for ~2 minutes on 2 shared cores.
2. Streaming decode into an mp4 sink (PyAV), 8 vs 64 latent frames, 128×128: our peak memory should not grow with
   length; diffusers' one-shot decode, which holds the whole clip, is shown for contrast.

Writes the `bench_vae` section of docs/benchmarks.md.  Usage: python scripts/bench_vae.py [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from causal_vae import CausalVAE, VAEConfig
from vidgen.benchmarking import machine_info, run_isolated, time_alternating, write_section

BENCH_CONFIG = VAEConfig(base_dim=32, num_res_blocks=2)
BENCH_VIDEO = (1, 3, 9, 64, 64)
STREAM_CONFIG = VAEConfig(base_dim=8, num_res_blocks=1)
STREAM_SIZE = 128
STREAM_LENGTHS = (8, 64)


def diffusers_vae(cfg: VAEConfig, seed: int = 0):
    from diffusers import AutoencoderKLWan

    torch.manual_seed(seed)
    ref = AutoencoderKLWan(
        base_dim=cfg.base_dim, z_dim=cfg.z_dim, dim_mult=list(cfg.dim_mult), num_res_blocks=cfg.num_res_blocks,
        temperal_downsample=list(cfg.temporal_downsample), latents_mean=list(cfg.latents_mean),
        latents_std=list(cfg.latents_std),
    )  # fmt: skip
    with torch.no_grad():  # Wan zero-initialises some layers; give every one some weight
        for name, p in ref.named_parameters():
            p.add_(0.02 * torch.randn_like(p))
    return ref.eval()


def load(impl: str, folder: str):
    if impl == "ours":
        return CausalVAE.from_pretrained(folder)
    from diffusers import AutoencoderKLWan

    return AutoencoderKLWan.from_pretrained(folder).eval()


def _status(key: str) -> float:
    """A /proc/self/status memory line, MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(key)


def _reset_peak() -> float:
    """Reset the kernel's peak-RSS mark (VmHWM) so loading transients are not counted; return current RSS, MiB."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status("VmRSS")


def op_peak(impl: str, folder: str, op: str, shape: tuple) -> float:
    """In a fresh process: peak RSS increase (MiB) of one encode or decode."""
    torch.manual_seed(0)
    vae = load(impl, folder)
    x = torch.rand(shape) * 2 - 1 if op == "encode" else torch.randn(shape)
    before = _reset_peak()
    with torch.no_grad():
        if impl == "ours":
            vae.encode(x) if op == "encode" else vae.decode(x)
        else:
            vae.encode(x).latent_dist.mean if op == "encode" else vae.decode(x).sample
    return _status("VmHWM") - before


def decode_to_mp4(impl: str, folder: str, latent_frames: int, size: int, out: str) -> float:
    """In a fresh process: decode `latent_frames` latents into an mp4 file; peak RSS increase, MiB."""
    import av

    torch.manual_seed(0)
    vae = load(impl, folder)
    z = torch.randn(1, 16, latent_frames, size // 8, size // 8)
    before = _reset_peak()
    with av.open(out, "w") as container, torch.no_grad():
        stream = container.add_stream("mpeg4", rate=16)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        parts = vae.stream_decode([z]) if impl == "ours" else [vae.decode(z).sample]
        for part in parts:  # (1, 3, t, H, W) in [-1, 1]
            frames = ((part[0].permute(1, 2, 3, 0) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return _status("VmHWM") - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, only to check the script runs")
    args = parser.parse_args()
    torch.set_num_threads(2)
    video_shape, stream_lengths, stream_size = BENCH_VIDEO, STREAM_LENGTHS, STREAM_SIZE
    if args.quick:
        video_shape, stream_lengths, stream_size = (1, 3, 5, 32, 32), (2, 4), 32
    with tempfile.TemporaryDirectory() as tmp:
        folder, stream_folder = f"{tmp}/bench", f"{tmp}/stream"
        diffusers_vae(BENCH_CONFIG).save_pretrained(folder)
        diffusers_vae(STREAM_CONFIG).save_pretrained(stream_folder)

        ours, ref = load("ours", folder), load("diffusers", folder)
        torch.manual_seed(0)
        video = torch.rand(video_shape) * 2 - 1
        with torch.no_grad():
            z = ours.encode(video)
            mean = torch.tensor(BENCH_CONFIG.latents_mean).view(1, -1, 1, 1, 1)
            std = torch.tensor(BENCH_CONFIG.latents_std).view(1, -1, 1, 1, 1)
            err_enc = ((ours.encode(video) - (ref.encode(video).latent_dist.mean - mean) / std).abs().max()).item()
            times = time_alternating(
                {
                    "ours encode": lambda: ours.encode(video),
                    "diffusers encode": lambda: ref.encode(video).latent_dist.mean,
                    "ours decode": lambda: ours.decode(z),
                    "diffusers decode": lambda: ref.decode(z * std + mean).sample,
                },
                repeats=1,  # one timed run after a warm-up: the machine is shared, keep it short
                warmup=1,
            )
        del ours, ref
        mem = {}
        for impl in ("ours", "diffusers"):
            for op, shape in (("encode", video_shape), ("decode", tuple(z.shape))):
                mem[f"{impl} {op}"] = run_isolated(op_peak, impl, folder, op, shape)[0]
        stream_mem, stream_time = {}, {}
        for impl in ("ours", "diffusers"):
            for n in stream_lengths:
                mib, seconds = run_isolated(decode_to_mp4, impl, stream_folder, n, stream_size, f"{tmp}/{impl}{n}.mp4")[:2]
                stream_mem[(impl, n)], stream_time[(impl, n)] = mib, seconds

    c = BENCH_CONFIG
    lines = [
        f"Machine: {machine_info()}. One run, {'QUICK (not representative)' if args.quick else 'full sizes'}.",
        "",
        f"Config: base_dim {c.base_dim}, dim_mult {list(c.dim_mult)}, num_res_blocks {c.num_res_blocks}, z_dim {c.z_dim};"
        f" video {list(video_shape)} -> latents {list(z.shape)}; fp32; same random weights (diffusers folder) and"
        f" inputs. Max |Δ| of normalised latents vs diffusers: {err_enc:.1e}.",
        "",
        "| op | ours s | diffusers s | speed-up (diffusers/ours) | ours peak MiB | diffusers peak MiB | memory ratio (ours/diffusers) |",
        "|---|---|---|---|---|---|---|",
    ]
    for op in ("encode", "decode"):
        o, d = times[f"ours {op}"], times[f"diffusers {op}"]
        mo, md = mem[f"ours {op}"], mem[f"diffusers {op}"]
        lines.append(f"| {op} | {o:.2f} | {d:.2f} | {d / o:.2f}× | {mo:.0f} | {md:.0f} | {mo / md:.2f} |")
    a, b = stream_lengths
    lines += [
        "",
        f"Streaming decode into an mp4 (PyAV, mpeg4), {stream_size}×{stream_size}, config base_dim "
        f"{STREAM_CONFIG.base_dim}, num_res_blocks {STREAM_CONFIG.num_res_blocks}; peak RSS increase during the decode:",
        "",
        f"| implementation | {a} latent frames MiB | {b} latent frames MiB | ratio {b}/{a} |",
        "|---|---|---|---|",
    ]
    for impl, label in (("ours", "ours, stream_decode -> sink"), ("diffusers", "diffusers, decode() then write")):
        m1, m2 = stream_mem[(impl, a)], stream_mem[(impl, b)]
        lines.append(f"| {label} | {m1:.0f} | {m2:.0f} | {m2 / m1:.2f} |")
    text = "\n".join(lines)
    print(text)
    if not args.quick:
        write_section("bench_vae", "## VAE: causal_vae vs diffusers AutoencoderKLWan\n\n" + text)


if __name__ == "__main__":
    main()
