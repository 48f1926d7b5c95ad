"""The DiT as a sampler's model: (x (B, C, F, h, w), σ (B,) or (B, F)) → velocity, float32, with guidance.

`guided_velocity` builds the model of one sampling trajectory from the text contexts and the call's options: plain,
classifier-free guided (both branches batched in one forward, or one after the other), or guidance-parallel over two
ranks; each DiT branch with its own step cache when asked, since a cache must never mix two trajectories.
"""

from __future__ import annotations

from dataclasses import dataclass
import torch

from vidgen.dit.step_cache import StepCache, StepCacheConfig
from vidgen.flow import to_timestep
from vidgen.samplers import ModelFn, cfg


@dataclass(frozen=True)
class TextContexts:
    """The DiT's text contexts for a batch: cond (B, L, D); uncond (B, L, D) or None without guidance."""

    cond: torch.Tensor
    uncond: torch.Tensor | None = None


def velocity(dit: torch.nn.Module, context: torch.Tensor, parallel=None,
             step_cache: StepCache | None = None) -> ModelFn:
    """The DiT over one text context: (x, σ) → v, float32; inputs cast to the DiT's dtype, t = 1000·σ."""
    dtype = next(dit.parameters()).dtype

    def model(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return dit(x.to(dtype), to_timestep(sigma), context, parallel=parallel, step_cache=step_cache).float()

    return model


def velocity_both(dit: torch.nn.Module, texts: TextContexts, parallel=None, step_cache: StepCache | None = None):
    """Both guidance branches in one batched forward: (x, σ) → (v_cond, v_uncond)."""
    dtype = next(dit.parameters()).dtype
    both = torch.cat([texts.cond, texts.uncond])  # (2B, L, D)

    def model(x: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v = dit(torch.cat([x, x]).to(dtype), to_timestep(torch.cat([sigma, sigma])), both, parallel=parallel,
                step_cache=step_cache).float()
        return v.chunk(2)

    return model


def guided_velocity(dit: torch.nn.Module, texts: TextContexts, guidance_scale: float, *, parallel=None,
                    batch_guidance: bool = True,
                    step_cache: StepCacheConfig | None = None) -> tuple[ModelFn, tuple[StepCache, ...]]:
    """The (guided) model of one sampling trajectory and the step caches it fills (empty without `step_cache`).

    batch_guidance: both branches in one forward (faster, twice one branch's activation memory). With a parallel
    context whose cfg_size is 2 the branches run on two ranks instead."""
    caches: list[StepCache] = []

    def new_cache() -> StepCache | None:
        if step_cache is None:
            return None
        caches.append(StepCache(step_cache))
        return caches[-1]

    guided = guidance_scale > 1
    if guided and parallel is not None and parallel.cfg_size > 1:
        from vidgen.parallel.guidance import cfg_parallel

        model = cfg_parallel(velocity(dit, texts.cond, parallel, new_cache()),
                             velocity(dit, texts.uncond, parallel, new_cache()), guidance_scale, parallel)
    elif guided and batch_guidance:
        cond = velocity(dit, texts.cond, parallel)  # cfg runs the batched model; this one only if scale <= 1
        both = velocity_both(dit, texts, parallel, new_cache())
        model = cfg(cond, velocity(dit, texts.uncond, parallel), guidance_scale, model_both=both)
    elif guided:
        model = cfg(velocity(dit, texts.cond, parallel, new_cache()),
                    velocity(dit, texts.uncond, parallel, new_cache()), guidance_scale)
    else:
        model = velocity(dit, texts.cond, parallel, new_cache())
    return model, tuple(caches)


def check_step_cache(step_cache: StepCacheConfig | None, parallel) -> None:
    if step_cache is not None and parallel is not None and parallel.sp_size > 1:
        raise ValueError("step_cache is not supported with sequence parallelism (parallel.sp_size > 1)")

