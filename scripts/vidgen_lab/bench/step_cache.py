"""The step cache's trade-off: fraction of DiT forwards that skip blocks 2..N, time, and PSNR against the uncached
result, for a few thresholds.

Two subjects: a random Wan-shaped DiT (Wan 2.1 1.3B's depth, 30 blocks, and its head dimension 128 and FFN ratio, at a
fraction of its width; weights perturbed so no layer is the identity), sampled in latent space with the pipeline's
guidance wiring; and the embedded default model through `VideoPipeline` (pixels), when it is installed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from vidgen.dit.config import DiTConfig
from vidgen.dit.model import DiT
from vidgen.dit.step_cache import StepCacheConfig
from vidgen.metrics import psnr

THRESHOLDS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)
WAN_NARROW = DiTConfig(dim=256, ffn_dim=1536, num_heads=2, num_layers=30, text_dim=256, text_len=64)
WAN_NARROW_LATENT = (16, 5, 8, 8)  # 80 tokens
STEPS, GUIDANCE, SHIFT = 20, 5.0, 3.0


@dataclass
class TradeOff:
    threshold: float
    skipped: float  # fraction of DiT forwards that reused the cache
    blocks: float  # fraction of the uncached run's block evaluations done
    seconds: float
    psnr_db: float  # against threshold 0 (uncached)


def wan_narrow(seed: int = 0) -> DiT:
    torch.manual_seed(seed)
    dit = DiT(WAN_NARROW).eval()
    with torch.no_grad():
        for p in dit.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return dit


def latent_tradeoff(dit: DiT, thresholds=THRESHOLDS, steps: int = STEPS, seed: int = 0) -> list[TradeOff]:
    """Sample one clip per threshold from the same noise and text (guided, Euler); PSNR over the final latents with
    the uncached latents' range as the peak."""
    from vidgen.flow import sigma_schedule
    from vidgen.samplers import sample_euler
    from vidgen.velocity import TextContexts, guided_velocity, velocity_both

    g = torch.Generator().manual_seed(seed)
    c = dit.config
    noise = torch.randn(1, *WAN_NARROW_LATENT, generator=g)
    cond, uncond = (torch.randn(1, c.text_len, c.text_dim, generator=g) for _ in range(2))
    texts = TextContexts(cond, uncond)
    with torch.no_grad():  # warm-up, so the first timed run is not the slowest for no reason
        velocity_both(dit, texts)(noise, torch.ones(1))
    results, ref = [], None
    for threshold in thresholds:
        model, (cache,) = guided_velocity(dit, texts, GUIDANCE, step_cache=StepCacheConfig(threshold))
        start = time.perf_counter()
        with torch.no_grad():
            out = sample_euler(model, noise, sigma_schedule(steps, SHIFT))
        seconds = time.perf_counter() - start
        if ref is None:
            if threshold != 0:
                raise ValueError("the first threshold must be 0 (the uncached reference)")
            ref = out
        span = float(ref.max() - ref.min())
        blocks = (cache.computed * c.num_layers + cache.skipped) / ((cache.computed + cache.skipped) * c.num_layers)
        results.append(TradeOff(threshold, cache.skipped_fraction, blocks, seconds, psnr(out, ref, data_range=span)))
    return results


def pipeline_tradeoff(pipe, prompt: str, thresholds=THRESHOLDS, seed: int = 0, **kwargs) -> list[TradeOff]:
    """The same through a whole `VideoPipeline` call (decoded frames in [0, 1])."""
    results, ref = [], None
    for threshold in thresholds:
        start = time.perf_counter()
        out = pipe(prompt, seed=seed, progress=False, step_cache=StepCacheConfig(threshold), **kwargs)
        seconds = time.perf_counter() - start
        ref = out.frames if ref is None else ref
        skipped = sum(c.skipped for c in out.step_caches)
        total = skipped + sum(c.computed for c in out.step_caches)
        n = pipe.dit.config.num_layers
        blocks = ((total - skipped) * n + skipped) / (total * n)
        results.append(TradeOff(threshold, skipped / total, blocks, seconds, psnr(out.frames, ref, data_range=1.0)))
    return results


def markdown(results: list[TradeOff]) -> str:
    base = results[0].seconds
    lines = ["| threshold | forwards reusing the cache | blocks run | time vs uncached | PSNR vs uncached (dB) |",
             "|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r.threshold:g} | {r.skipped:.0%} | {r.blocks:.0%} | {r.seconds / base:.2f} | "
                     f"{r.psnr_db:.1f} |")
    return "\n".join(lines)
