"""Reading a LoRA: a safetensors file (tensors and diffusers' adapter metadata) or an in-memory state dict.

Every problem is a one-line ValueError naming the file. Only safetensors are read (no pickle).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

# diffusers writes the peft LoraConfig of a saved adapter as JSON under this safetensors metadata key, its fields
# prefixed with the component (`transformer.lora_alpha`) by pipelines, unprefixed by a model's own save.
METADATA_KEY = "lora_adapter_metadata"
COMPONENT = "transformer."


@dataclass(frozen=True)
class LoraSource:
    """A LoRA's tensors, its adapter config (diffusers metadata: `r`, `lora_alpha`, `alpha_pattern`, ... or {}) and
    a label for messages (the file's path, or "<state dict>")."""

    tensors: dict[str, torch.Tensor]
    config: dict[str, Any] = field(default_factory=dict)
    label: str = "<state dict>"


def read_lora(source: str | Path | Mapping[str, torch.Tensor], config: Mapping[str, Any] | None = None) -> LoraSource:
    """A LoRA from a `.safetensors` path or a state dict; `config` (diffusers' adapter metadata) overrides the
    file's."""
    if isinstance(source, Mapping):
        bad = next((k for k, v in source.items() if not isinstance(v, torch.Tensor)), None)
        if bad is not None:
            raise ValueError(f"LoRA state dict: {bad!r} is a {type(source[bad]).__name__}; expected tensors")
        return LoraSource(dict(source), _strip(dict(config or {})))
    if not isinstance(source, (str, Path)):
        raise ValueError(f"load_lora_weights takes a .safetensors path or a state dict, got a {type(source).__name__}")
    path = Path(source)
    header = read_header(path)
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    meta = _adapter_config(path, header) if config is None else _strip(dict(config))
    return LoraSource(tensors, meta, str(path))


def read_header(path: Path) -> dict[str, Any]:
    """The metadata dict of a safetensors file, after checking it exists and its header parses (no tensor read)."""
    if not path.is_file():
        raise ValueError(f"LoRA file not found: {path}" + (" (a folder; give the .safetensors file in it)"
                                                           if path.is_dir() else ""))
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: LoRA files are read as .safetensors only (pickled .bin/.pt/.ckpt are not loaded)")
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {"keys": list(f.keys()), "metadata": f.metadata() or {}}
    except Exception as e:  # safetensors raises its own error types for a truncated or corrupt header
        raise ValueError(f"{path}: not a readable safetensors file ({e})") from None


def _adapter_config(path: Path, header: dict[str, Any]) -> dict[str, Any]:
    raw = header["metadata"].get(METADATA_KEY)
    if not raw:
        return {}
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: its {METADATA_KEY} metadata is not JSON ({e})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}: its {METADATA_KEY} metadata is a {type(config).__name__}; expected an object")
    return _strip(config)


def _strip(config: dict[str, Any]) -> dict[str, Any]:
    """The transformer's fields of an adapter config, `transformer.` prefixes removed (other components dropped)."""
    if any(k.startswith(COMPONENT) for k in config):
        return {k[len(COMPONENT):]: v for k, v in config.items() if k.startswith(COMPONENT)}
    return config


def parse_lora_spec(spec: str) -> tuple[Path, float]:
    """`FILE[:WEIGHT]` -> (path, weight); a colon followed by no number is part of the path."""
    path, sep, tail = spec.rpartition(":")
    if sep and path:
        try:
            weight = float(tail)
        except ValueError:
            return Path(spec), 1.0
        if not math.isfinite(weight):
            raise ValueError(f"--lora {spec!r}: the weight {tail!r} is not a finite number")
        return Path(path), weight
    return Path(spec), 1.0
