"""causal_vae: a causal 3D VAE, architecture-compatible with Wan 2.1's and Wan 2.2's, with streaming encode/decode.

Leaf package: depends on torch, einops and safetensors only, never on `vidgen`.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "CausalVAE": "causal_vae.model",
    "VAEConfig": "causal_vae.config",
    "TemporalCache": "causal_vae.cache",
    "Tiling": "causal_vae.tiling",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'causal_vae' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
