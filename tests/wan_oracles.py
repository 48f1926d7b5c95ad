"""Tiny random diffusers Wan pipelines of each family (test-only oracles) and the helpers to compare ours with them.

Every family is built from the same pieces: a tiny UMT5 text encoder, a tiny AutoencoderKLWan (Wan 2.1's, or Wan 2.2's
residual one), tiny WanTransformer3DModels, and for Wan 2.1 I2V/FLF2V a tiny CLIP vision tower. The scheduler is
UniPC (Wan's own) on vidgen's σ grid: diffusers' pipelines call `set_timesteps(num_steps)`, which `OurSigmas` answers
with the same σ's vidgen uses (docs/design.md: diffusers' own flow grid differs).
"""

from __future__ import annotations

import numpy as np
import torch

from tests.tiny_pipeline import tiny_tokenizer, tiny_umt5
from tests.vae_oracle import perturb_vae_

Z_DIM, TEXT_DIM, CLIP_DIM, SHIFT = 4, 32, 16, 3.0
CLIP_SIZE, CLIP_PATCH = 32, 8
CLIP_TOKENS = (CLIP_SIZE // CLIP_PATCH) ** 2 + 1  # patches + the class token


def our_sigmas_scheduler(base):
    """A subclass of the diffusers scheduler class `base` whose set_timesteps(n) steps on vidgen's σ grid."""

    class OurSigmas(base):
        def set_timesteps(self, num_inference_steps=None, device=None, **kwargs):
            # the scheduler applies its own flow_shift (= vidgen's shift formula) to the σ's it is given
            super().set_timesteps(sigmas=np.linspace(1.0, 0.0, num_inference_steps + 1)[:-1], device=device)

    return OurSigmas


def scheduler(kind: str = "unipc"):
    import diffusers

    if kind == "unipc":
        return diffusers.UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                                 flow_shift=SHIFT, num_train_timesteps=1000)
    return diffusers.FlowMatchEulerDiscreteScheduler(shift=SHIFT)


def on_our_sigmas(pipe):
    """The oracle with its scheduler swapped for the same class stepping on vidgen's σ's (after save_pretrained)."""
    sched = pipe.scheduler
    pipe.scheduler = our_sigmas_scheduler(type(sched)).from_config(sched.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _perturb(module, scale=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return module.eval()


def transformer(in_channels=Z_DIM, out_channels=Z_DIM, image=False, flf=False, seed=0):
    import diffusers

    torch.manual_seed(seed)
    m = diffusers.WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=in_channels,
        out_channels=out_channels, text_dim=TEXT_DIM, freq_dim=32, ffn_dim=48, num_layers=2, cross_attn_norm=True,
        eps=1e-6, rope_max_seq_len=32, image_dim=CLIP_DIM if image else None,
        added_kv_proj_dim=24 if image else None, pos_embed_seq_len=2 * CLIP_TOKENS if flf else None)
    return _perturb(m, seed=seed)


def vae21():
    import diffusers

    torch.manual_seed(0)
    vae = diffusers.AutoencoderKLWan(
        base_dim=8, z_dim=Z_DIM, dim_mult=[1, 2, 2, 2], num_res_blocks=1, temperal_downsample=[False, True, True],
        latents_mean=[0.1, -0.2, 0.3, 0.0], latents_std=[1.5, 0.8, 1.2, 2.0]).eval()
    perturb_vae_(vae)
    return vae


def clip():
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    cfg = CLIPVisionConfig(hidden_size=CLIP_DIM, intermediate_size=32, num_hidden_layers=3, num_attention_heads=2,
                           image_size=CLIP_SIZE, patch_size=CLIP_PATCH, projection_dim=16)
    processor = CLIPImageProcessor(size={"shortest_edge": CLIP_SIZE}, crop_size={"height": CLIP_SIZE,
                                                                                "width": CLIP_SIZE})
    return _perturb(CLIPVisionModel(cfg), 0.05), processor


def text_parts():
    return dict(tokenizer=tiny_tokenizer(), text_encoder=tiny_umt5(d_model=TEXT_DIM))


def i2v_pipeline(flf: bool = False):
    """Wan 2.1 I2V (or FLF2V): 4 + 4 + 4 channels in, CLIP tokens."""
    import diffusers

    encoder, processor = clip()
    return diffusers.WanImageToVideoPipeline(
        **text_parts(), vae=vae21(), scheduler=scheduler(), image_encoder=encoder, image_processor=processor,
        transformer=transformer(in_channels=2 * Z_DIM + 4, image=True, flf=flf))


def a14b_pipeline(image: bool = False, boundary_ratio: float = 0.75):
    """Wan 2.2 A14B: two experts (T2V, or I2V with 12 channels in and no CLIP)."""
    import diffusers

    in_channels = 2 * Z_DIM + 4 if image else Z_DIM
    experts = dict(transformer=transformer(in_channels, seed=0), transformer_2=transformer(in_channels, seed=1),
                   boundary_ratio=boundary_ratio)
    if image:
        return diffusers.WanImageToVideoPipeline(**text_parts(), vae=vae21(), scheduler=scheduler(), **experts)
    return diffusers.WanPipeline(**text_parts(), vae=vae21(), scheduler=scheduler(), **experts)


def picture(height: int, width: int, seed: int):
    """A random RGB PIL image."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def rel(a, b) -> float:
    a, b = torch.as_tensor(np.asarray(a)).double(), torch.as_tensor(np.asarray(b)).double()
    return ((a - b).norm() / b.norm()).item()


def ti2v_parts():
    """Wan 2.2 TI2V-5B's shape in small: the residual, 2×2-patching Wan 2.2 VAE and a DiT on its latents."""
    from causal_vae.config import preset
    from tests.vae_oracle import tiny_diffusers_vae

    vae = tiny_diffusers_vae(preset("tiny-wan2.2"))
    z = vae.config.z_dim
    return dict(**text_parts(), vae=vae, scheduler=scheduler(), transformer=transformer(z, z))


def ti2v_pipelines():
    """(text-to-video, image-to-video) diffusers pipelines sharing one TI2V model; the first is the folder to save."""
    import diffusers

    parts = ti2v_parts()
    return (diffusers.WanPipeline(**parts, expand_timesteps=True),
            diffusers.WanImageToVideoPipeline(**parts, expand_timesteps=True))
