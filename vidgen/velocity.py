"""The DiT as a sampler's model: (x (B, C, F, h, w), σ (B,) or (B, F)) → velocity, float32, with guidance.

`guided_velocity` builds the model of one sampling trajectory from the text contexts and the call's options: plain,
classifier-free guided (both branches batched in one forward, or one after the other), or guidance-parallel over two
ranks; each DiT branch with its own step cache when asked, since a cache must never mix two trajectories.
"""

from __future__ import annotations

from dataclasses import dataclass
import torch

from vidgen.dit.step_cache import StepCache, StepCacheConfig
from vidgen.flow import T_SCALE, to_timestep
from vidgen.samplers import ModelFn, cfg


@dataclass(frozen=True)
class TextContexts:
    """What the DiT is conditioned on besides x and t, for a batch of B.

    cond (B, L, D): the prompts' text context; uncond (B, L, D) or None without guidance: the negative prompts'.
    image (B, L_img, D_img) or None: image-encoder tokens (Wan 2.1 I2V/FLF2V), part of the context of both branches.
    channels (B, C_extra, F, h, w) or None: input channels concatenated after x on every step (Wan's image-to-video
    mask and conditioning latents), the same for both branches.
    integer_timesteps: feed the DiT ⌊1000·σ⌋ (`flow.to_timestep`), as the model's own scheduler does."""

    cond: torch.Tensor
    uncond: torch.Tensor | None = None
    image: torch.Tensor | None = None
    channels: torch.Tensor | None = None
    integer_timesteps: bool = False

    def inputs(self, x: torch.Tensor, sigma: torch.Tensor, dtype: torch.dtype, repeat: int = 1):
        """The DiT's x (with the extra channels), t and image keyword for x (B·repeat, C, F, h, w)."""
        if self.channels is not None:
            x = torch.cat([x, self.channels.repeat(repeat, 1, 1, 1, 1).to(x)], dim=1)  # (B', C + C_extra, F, h, w)
        extra = {} if self.image is None else {"image_context": self.image.repeat(repeat, 1, 1)}
        return x.to(dtype), to_timestep(sigma, self.integer_timesteps), extra


def velocity(dit: torch.nn.Module, context: torch.Tensor, parallel=None,
             step_cache: StepCache | None = None, texts: TextContexts | None = None) -> ModelFn:
    """The DiT over one text context: (x, σ) → v, float32; inputs cast to the DiT's dtype, t = 1000·σ. `texts`: the
    call's contexts, for their image tokens, extra channels and timestep rule."""
    dtype = next(dit.parameters()).dtype
    texts = texts or TextContexts(context)

    def model(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        x_in, t, extra = texts.inputs(x, sigma, dtype)
        return dit(x_in, t, context, parallel=parallel, step_cache=step_cache, **extra).float()

    return model


def velocity_both(dit: torch.nn.Module, texts: TextContexts, parallel=None, step_cache: StepCache | None = None):
    """Both guidance branches in one batched forward: (x, σ) → (v_cond, v_uncond)."""
    dtype = next(dit.parameters()).dtype
    both = torch.cat([texts.cond, texts.uncond])  # (2B, L, D)

    def model(x: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x_in, t, extra = texts.inputs(torch.cat([x, x]), torch.cat([sigma, sigma]), dtype, repeat=2)
        v = dit(x_in, t, both, parallel=parallel, step_cache=step_cache, **extra).float()
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

        model = cfg_parallel(velocity(dit, texts.cond, parallel, new_cache(), texts),
                             velocity(dit, texts.uncond, parallel, new_cache(), texts), guidance_scale, parallel)
    elif guided and batch_guidance:
        cond = velocity(dit, texts.cond, parallel, texts=texts)  # cfg runs the batched model; this one if scale <= 1
        both = velocity_both(dit, texts, parallel, new_cache())
        model = cfg(cond, velocity(dit, texts.uncond, parallel, texts=texts), guidance_scale, model_both=both)
    elif guided:
        model = cfg(velocity(dit, texts.cond, parallel, new_cache(), texts),
                    velocity(dit, texts.uncond, parallel, new_cache(), texts), guidance_scale)
    else:
        model = velocity(dit, texts.cond, parallel, new_cache(), texts)
    return model, tuple(caches)


def check_step_cache(step_cache: StepCacheConfig | None, parallel) -> None:
    if step_cache is not None and parallel is not None and parallel.sp_size > 1:
        raise ValueError("step_cache is not supported with sequence parallelism (parallel.sp_size > 1)")



def switch_experts(high_noise: ModelFn, low_noise: ModelFn, boundary_ratio: float,
                   integer_timesteps: bool = False) -> ModelFn:
    """Two experts as one model (Wan 2.2 A14B): `high_noise` on steps whose timestep t = 1000·σ is at least
    1000·boundary_ratio, `low_noise` after. A step's σ is the largest of its per-frame σ's (clean frames have 0)."""
    boundary = boundary_ratio * T_SCALE

    def model(x: torch.Tensor, sigma: torch.Tensor):
        t = to_timestep(sigma.max().reshape(1), integer_timesteps).item()
        return (high_noise if t >= boundary else low_noise)(x, sigma)

    return model
