"""Image tokens for Wan 2.1 image-to-video and first-last-frame: a CLIP vision tower through `transformers`.

Wan uses CLIP ViT-H/14's second-to-last hidden state (all 257 tokens, no final LayerNorm) of the image after CLIP's own
preprocessing (resize of the short side, centre crop, normalisation), read from the folder's `image_processor/`.
First-last-frame encodes both images and joins their tokens into one sequence (first, then last).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vidgen.pixels import image_to_unit


class ImageEncoder:
    """A transformers `CLIPVisionModel` + its `CLIPImageProcessor` → image tokens (1, n·257, 1280) for n images."""

    def __init__(self, model: torch.nn.Module, processor):
        self.model = model
        self.processor = processor

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, processor_dir: str | Path, *, dtype: torch.dtype | None = None,
                        device: str | torch.device | None = None) -> "ImageEncoder":
        """Load `image_encoder/` and `image_processor/` folders (diffusers' Wan I2V layout); weights that do not
        read or do not fit raise one WeightsError naming the file."""
        from transformers import CLIPImageProcessor, CLIPVisionModel

        from vidgen.text_files import load_encoder

        model = load_encoder(Path(model_dir), dtype or torch.float32, model_class=CLIPVisionModel)
        model = model.eval().requires_grad_(False)
        if device is not None:
            model = model.to(device)
        return cls(model, CLIPImageProcessor.from_pretrained(str(processor_dir)))

    def save_pretrained(self, model_dir: str | Path, processor_dir: str | Path) -> None:
        self.model.save_pretrained(str(model_dir))
        self.processor.save_pretrained(str(processor_dir))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def __call__(self, images: list) -> torch.Tensor:
        """Images (PIL, np (H, W, 3) or tensors (3, H, W); uint8 or float in [0, 1]) → tokens (1, n·L, D) float32."""
        pixels = [_as_uint8(image) for image in images]  # CLIP's processor takes what a PIL image holds
        batch = self.processor(images=pixels, return_tensors="pt")["pixel_values"]  # (n, 3, S, S)
        dtype = next(self.model.parameters()).dtype
        out = self.model(pixel_values=batch.to(self.device, dtype), output_hidden_states=True)
        tokens = out.hidden_states[-2]  # (n, L, D): the second-to-last layer, before the final LayerNorm
        return tokens.float().reshape(1, -1, tokens.shape[-1])  # (1, n·L, D)


def _as_uint8(image) -> np.ndarray:
    """(H, W, 3) uint8 of any image form `pixels.image_to_unit` takes."""
    if hasattr(image, "mode"):  # PIL: handed over as its pixels, so every form goes through the same path
        return np.asarray(image.convert("RGB"))
    unit = image_to_unit(image)  # (3, H, W) float in [0, 1]
    return (unit.permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
