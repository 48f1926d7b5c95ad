"""Widening a trained VAE's decoder without changing what it computes (Net2Net-style), to train it further wider.

A decoder of width `k·d` (`decoder_base_dim`) starts as the trained width-`d` one: every channel c of every decoder
layer becomes k copies (new channels c, c + C, ..., c + (k-1)·C), each computing exactly what c computed, because
  - a layer's output channel o reads the old output channel `o mod C` (its weights and bias copied; layers whose
    output is a stack of g blocks, like attention's q|k|v or the temporal upsampler's two frames, map block-wise);
  - a layer's widened input channel gets a random share of the old weight (the k shares of each weight element sum
    to it), so the sum over the k identical copies is the old sum, and the copies get different gradients: the
    symmetry that exact halving would leave in place is broken from the first step;
  - an RMS norm over k identical copies of each channel is unchanged (the norm grows by √k, and so does √C);
  - the attention logits q·k would grow k-fold over the copies and the 1/√C scale shrinks them by √k only, so q is
    scaled by 1/√k.
The encoder, the quant convs and the latent statistics are shared as they are: the latent space does not move.
"""

from __future__ import annotations

import dataclasses

import torch

from causal_vae.layers import AttentionBlock, Upsample
from causal_vae.model import CausalVAE


@torch.no_grad()
def widen_decoder(vae: CausalVAE, decoder_base_dim: int, generator: torch.Generator | None = None) -> CausalVAE:
    """A new CausalVAE whose decoder is `decoder_base_dim` wide and decodes exactly like `vae`'s (to fp32 rounding).

    `decoder_base_dim` must be a multiple of the current decoder width. `generator` (a CPU one) draws the weight
    shares; the weights are built on the CPU and the result is moved to `vae`'s device and dtype.
    """
    if vae.config.residual:
        raise ValueError("widen_decoder: a residual (Wan 2.2) decoder cannot be widened exactly (its duplicating "
                         "shortcuts regroup channels across the copies); widen a Wan 2.1-style decoder instead")
    old_dim = vae.config.decoder_dim
    if decoder_base_dim <= 0 or decoder_base_dim % old_dim:
        raise ValueError(f"decoder_base_dim must be a positive multiple of the current decoder width {old_dim}, "
                         f"got {decoder_base_dim}")
    config = dataclasses.replace(vae.config, decoder_base_dim=decoder_base_dim)
    wide = CausalVAE(config)  # fp32 on the CPU until the end
    factor = decoder_base_dim // old_dim
    source = {k: v.detach().float().cpu() for k, v in vae.state_dict().items()}
    wide.load_state_dict({k: v for k, v in source.items() if not k.startswith("decoder.")}, strict=False)

    groups = {}  # parameter name prefix -> number of stacked output blocks
    for name, module in wide.decoder.named_modules():
        if isinstance(module, AttentionBlock):
            groups[f"{name}.to_qkv."] = 3
        elif isinstance(module, Upsample) and module.temporal:
            groups[f"{name}.time_conv."] = 2
    for name, param in wide.decoder.named_parameters():
        old = source[f"decoder.{name}"]
        g = next((n for prefix, n in groups.items() if name.startswith(prefix)), 1)
        new = _widen_out(old, param.shape[0], g)
        if param.dim() >= 2 and param.shape[1] != old.shape[1]:
            new = _widen_in(new, param.shape[1], generator)
        if g == 3:  # attention: scale q (the first block of q|k|v) by 1/√factor
            new[: param.shape[0] // 3] /= factor**0.5
        param.copy_(new)
    return wide.to(device=vae.device, dtype=vae.dtype)


def _widen_out(w: torch.Tensor, out: int, groups: int) -> torch.Tensor:
    """Rows of `w` (axis 0: `groups` stacked blocks of C channels) -> `out` rows, row o reading its block's o mod C."""
    if out == w.shape[0]:
        return w.clone()
    old_c, new_c = w.shape[0] // groups, out // groups
    idx = torch.arange(out)
    return w[(idx // new_c) * old_c + (idx % new_c) % old_c]


def _widen_in(w: torch.Tensor, n_in: int, generator: torch.Generator | None) -> torch.Tensor:
    """Columns of `w` (axis 1, C input channels) -> `n_in` = k·C columns; column i holds a random share of the old
    column i mod C, the k shares of every element summing to it."""
    c = w.shape[1]
    k = n_in // c
    shares = torch.rand((k, *w.shape), generator=generator, dtype=torch.float32) + 0.5  # in [0.5, 1.5)
    shares /= shares.sum(0, keepdim=True)
    parts = shares * w.unsqueeze(0)  # (k, out, C, ...)
    return torch.cat(list(parts), dim=1)  # (out, k·C, ...): copy j of channel c at column j·C + c


__all__ = ["widen_decoder"]
