"""Loading and saving DiT weights: our folder, diffusers `WanTransformer3DModel`, original Wan 2.1.

Loading builds the model on the meta device and moves each tensor from the safetensors files straight into its place,
one tensor at a time, so a checkpoint never needs twice its size in memory. Only safetensors are read (no pickle).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import save_file

from vidgen.config_io import from_dict, to_dict
from vidgen.dit import convert_diffusers, convert_wan
from vidgen.dit.config import DiTConfig
from vidgen.files import write_atomic

OUR_CLASS_NAME = "vidgen.DiT"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FOREIGN_FORMATS: dict[str, ModuleType] = {"diffusers": convert_diffusers, "wan": convert_wan}


def detect_format(raw: dict[str, Any]) -> str:
    """'vidgen', 'diffusers' or 'wan' from a folder's config.json contents."""
    if raw.get("_class_name") == OUR_CLASS_NAME:
        return "vidgen"
    for name, module in FOREIGN_FORMATS.items():
        if module.is_this_format(raw):
            return name
    raise ValueError(
        f"config.json is not a vidgen DiT, a diffusers WanTransformer3DModel or an original Wan 2.1 config "
        f"(keys: {sorted(raw)})"
    )


def resolve_folder(path: str | Path) -> Path:
    """The folder holding config.json; a diffusers pipeline folder resolves to its `transformer/` subfolder."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"DiT checkpoint folder not found: {path}")
    if not (path / CONFIG_FILE).is_file() and (path / "transformer" / CONFIG_FILE).is_file():
        path = path / "transformer"
    if not (path / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{path} has no {CONFIG_FILE}; expected a DiT checkpoint folder")
    return path


def weight_files(folder: Path) -> list[Path]:
    """The safetensors shards of a folder: those named by a `*.safetensors.index.json`, else all `*.safetensors`."""
    indexes = sorted(folder.glob("*.safetensors.index.json"))
    if indexes:
        weight_map = json.loads(indexes[0].read_text())["weight_map"]
        files = [folder / name for name in dict.fromkeys(weight_map.values())]
        absent = [str(f) for f in files if not f.is_file()]
        if absent:
            raise FileNotFoundError(f"{indexes[0]} names shard(s) that are missing: {absent}")
        return files
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors weights in {folder} (pickled .pth/.bin checkpoints are not loaded)")
    return files


def read_config(folder: Path) -> tuple[str, DiTConfig]:
    raw = json.loads((folder / CONFIG_FILE).read_text())
    fmt = detect_format(raw)
    if fmt == "vidgen":
        fields = {k: v for k, v in raw.items() if not k.startswith("_")}
        return fmt, from_dict(DiTConfig, fields, where=str(folder / CONFIG_FILE))
    return fmt, FOREIGN_FORMATS[fmt].config_to_ours(raw)


def key_table(fmt: str, config: DiTConfig, model: nn.Module) -> dict[str, tuple[str, ...]]:
    """our parameter name -> checkpoint names (concatenated along dim 0), for the parameters `model` has."""
    params = dict(model.named_parameters())
    if fmt == "vidgen":
        return {name: (name,) for name in params}
    converter = FOREIGN_FORMATS[fmt]
    rows = dict(converter.GLOBAL)
    for i in range(config.num_layers):
        rows.update({f"blocks.{i}.{ours}": tuple(f"blocks.{i}.{t}" for t in theirs)
                     for ours, theirs in converter.BLOCK.items()})
    table = {ours: theirs for ours, theirs in rows.items() if ours in params}  # rows a config lacks are dropped
    unmapped = sorted(set(params) - set(table))
    if unmapped:  # a bug in the converter table, not in the user's checkpoint
        raise RuntimeError(f"{fmt} converter has no row for parameters {unmapped[:5]}")
    return table


def load_dit(path: str | Path, dtype: torch.dtype | None = None, device: str | torch.device = "cpu") -> nn.Module:
    from vidgen.dit.model import DiT

    folder = resolve_folder(path)
    fmt, config = read_config(folder)
    with torch.device("meta"):
        model = DiT(config)
    table = key_table(fmt, config, model)
    prefixes = () if fmt == "vidgen" else FOREIGN_FORMATS[fmt].KEY_PREFIXES
    load_tensors(model, weight_files(folder), table, prefixes, dtype, torch.device(device), where=str(folder))
    return model.eval()


def load_tensors(
    model: nn.Module,
    files: list[Path],
    table: dict[str, tuple[str, ...]],
    prefixes: tuple[str, ...],
    dtype: torch.dtype | None,
    device: torch.device,
    where: str,
) -> None:
    """Fill a meta-device `model` from safetensors `files`, one tensor at a time, following `table`.

    Raises one ValueError listing every missing key, unexpected key and shape mismatch.
    """
    source = {their: (ours, i) for ours, theirs in table.items() for i, their in enumerate(theirs)}
    pending: dict[str, list[torch.Tensor | None]] = {}
    loaded: set[str] = set()
    unexpected: list[str] = []
    mismatched: list[str] = []
    for file in files:
        with safe_open(str(file), framework="pt", device="cpu") as f:
            for key in f.keys():
                name = next((key[len(p):] for p in prefixes if key.startswith(p)), key)
                if name not in source:
                    unexpected.append(key)
                    continue
                ours, i = source[name]
                parts = pending.setdefault(ours, [None] * len(table[ours]))
                parts[i] = f.get_tensor(key)
                if any(p is None for p in parts):
                    continue  # a fused parameter waits for its other pieces (possibly in a later shard)
                del pending[ours]
                tensor = parts[0] if len(parts) == 1 else torch.cat(parts)
                if dtype is None and tensor.is_floating_point():
                    dtype = tensor.dtype  # keep the checkpoint's precision
                problem = _assign(model, ours, tensor, dtype, device)
                if problem:
                    mismatched.append(f"{ours} <- {table[ours]}: {problem}")
                loaded.add(ours)
    missing = [f"{ours} <- {theirs}" for ours, theirs in table.items() if ours not in loaded]
    if missing or unexpected or mismatched:
        def show(items):
            return "; ".join(items[:8]) + (f"; ... ({len(items)} in all)" if len(items) > 8 else "")

        lines = [f"cannot load DiT weights from {where}:"]
        if missing:
            lines.append(f"  missing keys: {show(missing)}")
        if unexpected:
            lines.append(f"  unexpected keys (not part of this model): {show(unexpected)}")
        if mismatched:
            lines.append(f"  shape mismatches: {show(mismatched)}")
        raise ValueError("\n".join(lines))


def _assign(model: nn.Module, name: str, tensor: torch.Tensor, dtype, device) -> str | None:
    module_name, _, leaf = name.rpartition(".")
    module = model.get_submodule(module_name)
    old = module._parameters[leaf]
    if tuple(old.shape) != tuple(tensor.shape):
        return f"checkpoint has {tuple(tensor.shape)}, model expects {tuple(old.shape)}"
    value = tensor.to(device=device, dtype=dtype if tensor.is_floating_point() else None)
    module._parameters[leaf] = nn.Parameter(value, requires_grad=old.requires_grad)
    return None


# ---- writing ---------------------------------------------------------------------------------------------------------


def export_state_dict(model: nn.Module, fmt: str) -> dict[str, torch.Tensor]:
    """Our state dict renamed (and fused tensors split) into a foreign layout: the inverse of loading."""
    state = {k: v.detach() for k, v in model.state_dict().items()}
    if fmt == "vidgen":
        return state
    out = {}
    for ours, theirs in key_table(fmt, model.config, model).items():
        for their, piece in zip(theirs, state[ours].chunk(len(theirs), dim=0)):
            out[their] = piece.contiguous()
    return out


def export_config(config: DiTConfig, fmt: str) -> dict[str, Any]:
    if fmt == "vidgen":
        return {"_class_name": OUR_CLASS_NAME, **to_dict(config)}
    return FOREIGN_FORMATS[fmt].config_from_ours(config)


def save_dit(model: nn.Module, folder: str | Path, fmt: str = "vidgen", overwrite: bool = False) -> None:
    """Write `config.json` and `model.safetensors` (or the foreign layout's names) into `folder`, atomically."""
    folder = Path(folder)
    if (folder / CONFIG_FILE).exists() and not overwrite:
        raise FileExistsError(f"{folder} already holds a checkpoint; pass overwrite=True to replace it")
    folder.mkdir(parents=True, exist_ok=True)
    weights = WEIGHTS_FILE if fmt == "vidgen" else "diffusion_pytorch_model.safetensors"
    tensors = {k: v.cpu().contiguous() for k, v in export_state_dict(model, fmt).items()}
    write_atomic(folder / weights, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))
    text = json.dumps(export_config(model.config, fmt), indent=2) + "\n"
    write_atomic(folder / CONFIG_FILE, lambda tmp: tmp.write_text(text))  # written last: marks the folder complete
