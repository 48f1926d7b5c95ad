"""Tiny text encoders and tokenizers built locally for the pipeline tests (nothing is downloaded)."""

from __future__ import annotations

import torch

WORDS = ["a", "red", "blue", "green", "circle", "square", "moves", "left", "right", "up", "down", "on", "the", "black",
         "background", "slowly", "fast", "big", "small", "triangle"]


def tiny_tokenizer():
    """A WordLevel tokenizer over WORDS wrapped as a transformers fast tokenizer; appends </s> like T5."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=512)


def tiny_umt5(d_model: int = 32, seed: int = 0):
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(seed)
    cfg = UMT5Config(vocab_size=len(WORDS) + 3, d_model=d_model, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                     relative_attention_num_buckets=8, relative_attention_max_distance=16)
    return UMT5EncoderModel(cfg).eval()


def perturb(module: torch.nn.Module, scale: float = 0.05, seed: int = 0) -> torch.nn.Module:
    """Add small noise to every parameter, so zero-initialised layers do not hide mistakes."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def tiny_vidgen_pipeline(**config):
    """Our VideoPipeline with tiny random components: DiT "tiny" (4 latent channels, text_dim 24), VAE "tiny"."""
    from causal_vae import CausalVAE
    from causal_vae.config import preset
    from vidgen.dit.config import DiTConfig
    from vidgen.dit.model import DiT
    from vidgen.pipeline import PipelineConfig, VideoPipeline
    from vidgen.text import TextEncoder

    torch.manual_seed(0)
    dit_cfg = DiTConfig.preset("tiny")
    dit = perturb(DiT(dit_cfg)).eval()
    vae = perturb(CausalVAE(preset("tiny")), 0.01).eval()
    text = TextEncoder(tiny_umt5(d_model=dit_cfg.text_dim), tiny_tokenizer(), max_tokens=dit_cfg.text_len)
    defaults = dict(num_frames=5, height=32, width=32, num_inference_steps=2, guidance_scale=3.0, shift=2.0)
    return VideoPipeline(dit, vae, text, PipelineConfig(**{**defaults, **config}))


def tiny_diffusers_transformer():
    """A tiny random diffusers WanTransformer3DModel (4 latent channels, text_dim 24), every weight offset so no gate,
    bias or table is trivially zero; drawn from torch's global generator, seeded 0 here."""
    import diffusers

    torch.manual_seed(0)
    model = diffusers.WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=4, attention_head_dim=12, in_channels=4, out_channels=4,
        text_dim=24, freq_dim=32, ffn_dim=96, num_layers=2, cross_attn_norm=True, eps=1e-6, rope_max_seq_len=64,
    ).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model
