"""Building the networks a run trains or uses from the strings in its config (preset name, config file, folder)."""

from __future__ import annotations

from pathlib import Path

from torch import nn


def load_dit(spec: str) -> nn.Module:
    """A DiT from a pretrained folder, a DiTConfig YAML/JSON (`preset:` + overrides allowed), or a preset name."""
    from vidgen.dit.config import PRESETS, DiTConfig
    from vidgen.dit.model import DiT

    path = Path(spec)
    if path.is_dir():
        return DiT.from_pretrained(path)
    if path.suffix in (".yaml", ".yml", ".json"):
        return DiT(DiTConfig.load(path))
    if spec not in PRESETS:
        raise ValueError(f"model {spec!r} is neither a folder, a .yaml/.json DiT config, nor a preset "
                         f"(presets: {sorted(PRESETS)})")
    return DiT(DiTConfig.preset(spec))


def load_vae(spec: str) -> nn.Module:
    """A causal VAE from a pretrained folder or .pth, or a fresh one from a preset name (for VAE training)."""
    from causal_vae import CausalVAE
    from causal_vae.config import PRESETS, preset

    path = Path(spec)
    if path.exists():
        return CausalVAE.from_pretrained(path)
    if spec not in PRESETS:
        raise ValueError(f"vae {spec!r} is neither an existing folder/file nor a preset (presets: {sorted(PRESETS)})")
    return CausalVAE(preset(spec))


def set_gradient_checkpointing(module: nn.Module, enabled: bool) -> None:
    if not hasattr(module, "gradient_checkpointing"):
        if enabled:
            raise ValueError(f"{type(module).__name__} has no gradient checkpointing switch")
        return
    module.gradient_checkpointing = enabled

