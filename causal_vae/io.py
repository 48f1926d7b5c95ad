"""Loading and saving CausalVAE weights: our folder, a diffusers AutoencoderKLWan folder, or the original .pth file.

Loading never runs pickled code: safetensors, or `torch.load(weights_only=True)` for the original checkpoint.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Mapping

import torch
from safetensors.torch import load_file, save_file

from causal_vae import convert
from causal_vae.config import PRESETS, VAEConfig

OUR_CLASS = "CausalVAE"
OUR_CONFIG, OUR_WEIGHTS = "config.json", "model.safetensors"
DIFFUSERS_WEIGHTS = "diffusion_pytorch_model.safetensors"


def load_vae(cls, path: str | Path, config: VAEConfig | None = None):
    """Build `cls` (CausalVAE) from `path`; `config` is needed only for an original .pth of a non-Wan-2.1 shape."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no VAE at {path}: expected a folder (ours or diffusers AutoencoderKLWan) or a .pth file")
    if path.is_file():
        if path.suffix not in (".pth", ".pt", ".ckpt"):
            raise ValueError(f"{path}: expected a folder, or an original Wan 2.1 VAE checkpoint (.pth)")
        sd = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(sd, Mapping) and "state_dict" in sd and isinstance(sd["state_dict"], Mapping):
            sd = sd["state_dict"]
        if not isinstance(sd, Mapping):
            raise ValueError(f"{path}: expected a state dict (a mapping of names to tensors), got {type(sd).__name__}")
        cfg = config or _guess_original_config(sd, path)
        model = cls(cfg)
        _load_checked(model, convert.original_to_ours(sd, cfg, model.state_dict().keys()), path)
        return model
    config_path = path / OUR_CONFIG
    if not config_path.is_file():
        raise FileNotFoundError(f"{path}: no config.json; expected a folder written by save_pretrained or by diffusers")
    meta = json.loads(config_path.read_text())
    if meta.get("_class_name") == OUR_CLASS:
        cfg = VAEConfig.from_dict({k: v for k, v in meta.items() if not k.startswith("_")}, where=str(config_path))
        weights = path / OUR_WEIGHTS
    else:
        cfg = convert.config_from_diffusers(meta, where=str(config_path))
        weights = path / DIFFUSERS_WEIGHTS
    if not weights.is_file():
        raise FileNotFoundError(f"{path}: missing weights file {weights.name}")
    model = cls(cfg)
    _load_checked(model, load_file(str(weights)), weights)
    return model


def _guess_original_config(sd: Mapping[str, torch.Tensor], path: Path) -> VAEConfig:
    cfg = PRESETS["wan2.1"]
    w = sd.get("encoder.conv1.weight")
    if w is None:
        raise ValueError(
            f"{path}: not an original Wan VAE checkpoint (no 'encoder.conv1.weight'; found e.g. {sorted(sd)[:5]})"
        )
    if w.shape[0] != cfg.base_dim:
        raise ValueError(
            f"{path}: base_dim {w.shape[0]} differs from Wan 2.1's {cfg.base_dim}; pass config=VAEConfig(...) to load it"
        )
    return cfg


def _load_checked(model: torch.nn.Module, sd: Mapping[str, torch.Tensor], source) -> None:
    """load_state_dict, with an error naming missing/unexpected keys and shape mismatches."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    wrong = [
        f"{k}: file {tuple(sd[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(sd) & set(expected))
        if tuple(sd[k].shape) != tuple(expected[k].shape)
    ]
    if len(missing) == len(expected):
        raise ValueError(
            f"{source}: none of the VAE's {len(expected)} parameters found; is this another model's file? "
            f"It holds e.g. {unexpected[:5]}"
        )
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s), e.g. {missing[:8]}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[:8]}")
    if wrong:
        problems.append(f"{len(wrong)} shape mismatch(es), e.g. {wrong[:4]}")
    if problems:
        raise ValueError(f"{source}: weights do not match the config's VAE: " + "; ".join(problems))
    model.load_state_dict(sd, strict=True)


def save_vae(model, folder: str | Path, overwrite: bool = False) -> Path:
    folder = Path(folder)
    targets = [folder / OUR_CONFIG, folder / OUR_WEIGHTS]
    if not overwrite and any(t.exists() for t in targets):
        raise FileExistsError(f"{folder} already holds a model; pass overwrite=True to replace it")
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"_class_name": OUR_CLASS, **model.config.to_dict()}
    sd = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    _atomic(targets[1], lambda tmp: save_file(sd, tmp, metadata={"format": "pt"}))
    _atomic(targets[0], lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2) + "\n"))
    return folder


def _atomic(target: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
