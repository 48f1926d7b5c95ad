"""Image tokens for the DiT (Wan 2.1 image-to-video and first-last-frame): CLIP tokens beside the text.

The image encoder's tokens `(B, L_img, image_dim)` (CLIP ViT-H's second-to-last hidden state, 257 per image) are
projected to the DiT width once per forward (`ImageEmbedding`), then every block's cross-attention attends to them with
its own key/value projections and adds the result to its text attention, sharing the query (`CrossAttention` in
model.py). First-last-frame models add a learned position embedding over the two images' tokens, so the model can tell
the first image from the last.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from vidgen.dit.config import DiTConfig
from vidgen_kernels.ops import linear

LAYER_NORM_EPS = 1e-5  # of the image projection's two LayerNorms (torch's default, as Wan)


class ImageEmbedding(nn.Module):
    """[+ position] -> LayerNorm -> Linear -> GELU -> Linear -> LayerNorm, all in fp32 (as Wan)."""

    def __init__(self, c: DiTConfig):
        super().__init__()
        self.norm_in = nn.LayerNorm(c.image_dim, eps=LAYER_NORM_EPS)
        self.fc1 = nn.Linear(c.image_dim, c.image_dim)
        self.fc2 = nn.Linear(c.image_dim, c.dim)
        self.norm_out = nn.LayerNorm(c.dim, eps=LAYER_NORM_EPS)
        self.position = nn.Parameter(torch.zeros(1, c.image_tokens, c.image_dim)) if c.image_tokens else None

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """image tokens `(B, L_img, image_dim)` -> `(B, L_img, D)` in the weights' dtype."""
        dtype = self.fc1.weight.dtype
        with torch.autocast(image.device.type, enabled=False):
            x = image.float()
            if self.position is not None:
                x = x + self.position.float()
            x = F.layer_norm(x, x.shape[-1:], self.norm_in.weight.float(), self.norm_in.bias.float(), self.norm_in.eps)
            x = F.gelu(linear(x.to(dtype), self.fc1.weight, self.fc1.bias))
            x = linear(x, self.fc2.weight, self.fc2.bias).float()
            x = F.layer_norm(x, x.shape[-1:], self.norm_out.weight.float(), self.norm_out.bias.float(),
                             self.norm_out.eps)
        return x.to(dtype)


def check_image_context(c: DiTConfig, image: torch.Tensor | None, batch: int) -> None:
    """A ValueError naming what is wrong with `forward`'s image tokens for this model."""
    if c.image_dim is None:
        if image is not None:
            raise ValueError("DiT: image_context given, but this model has no image cross-attention (image_dim None)")
        return
    if image is None:
        raise ValueError(f"DiT: this model attends to image tokens; pass image_context (B, L_img, {c.image_dim})")
    if image.ndim != 3 or image.shape[0] != batch or image.shape[2] != c.image_dim:
        raise ValueError(f"DiT: image_context has shape {tuple(image.shape)}; expected ({batch}, L_img, "
                         f"{c.image_dim}) image-encoder tokens")
    if c.image_tokens is not None and image.shape[1] != c.image_tokens:
        raise ValueError(f"DiT: this model takes exactly {c.image_tokens} image tokens (first and last frame), got "
                         f"{image.shape[1]}")
