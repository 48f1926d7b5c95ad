"""Loading and saving CausalVAE weights: our folder, a diffusers AutoencoderKLWan folder, or the original .pth file.

Loading never runs pickled code: safetensors, or `torch.load(weights_only=True)` for the original checkpoint.
A file that cannot be used (cut short, overwritten, missing tensors, wrong shapes) raises one `WeightsError` naming
it; the DiT and text encoder loaders in `vidgen` raise the same error through the helpers here.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from causal_vae import convert
from causal_vae.config import PRESETS, VAEConfig

OUR_CLASS = "CausalVAE"
OUR_CONFIG, OUR_WEIGHTS = "config.json", "model.safetensors"
DIFFUSERS_WEIGHTS = "diffusion_pytorch_model.safetensors"
SHOWN = 8  # names listed in an error before "... (N in all)"
FIX = "re-download or re-save it"
LFS_POINTER = b"version https://git-lfs"  # how a Git LFS pointer file begins: a clone made without `git lfs`


class WeightsError(ValueError):
    """A model file that cannot be used: unreadable, or not the tensors the model needs. `path` is that file (or the
    folder, when the problem spans several shards); the message names it. A ValueError, so the command line shows it
    as one line."""

    def __init__(self, path: str | Path, message: str):
        super().__init__(message)
        self.path = Path(path)

    def __reduce__(self):  # picklable, so it crosses process boundaries intact
        return type(self), (self.path, str(self))


# ---- loading ---------------------------------------------------------------------------------------------------------


def load_vae(cls, path: str | Path, config: VAEConfig | None = None):
    """Build `cls` (CausalVAE) from `path`; `config` is needed only for an original .pth of neither Wan 2.1's nor
    Wan 2.2's shape."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no VAE at {path}: expected a folder (ours or diffusers AutoencoderKLWan) or a .pth file")
    if path.is_file():
        if path.suffix not in (".pth", ".pt", ".ckpt"):
            raise ValueError(f"{path}: expected a folder, or an original Wan VAE checkpoint (.pth)")
        sd = _torch_load(path)
        if isinstance(sd, Mapping) and "state_dict" in sd and isinstance(sd["state_dict"], Mapping):
            sd = sd["state_dict"]
        if not isinstance(sd, Mapping):
            raise WeightsError(path, f"{path}: expected a state dict (a mapping of names to tensors), got "
                                     f"{type(sd).__name__}")
        cfg = config or _guess_original_config(sd, path)
        model = cls(cfg)
        _load_checked(model, convert.original_to_ours(sd, cfg, model.state_dict().keys()), path)
        return model
    config_path = path / OUR_CONFIG
    if not config_path.is_file():
        raise FileNotFoundError(f"{path}: no config.json; expected a folder written by save_pretrained or by diffusers")
    meta = read_json(config_path)
    if not isinstance(meta, dict):
        raise WeightsError(config_path, f"{config_path}: expected a JSON object of config fields, got a "
                                        f"{type(meta).__name__}")
    if meta.get("_class_name") == OUR_CLASS:
        cfg = VAEConfig.from_dict({k: v for k, v in meta.items() if not k.startswith("_")}, where=str(config_path))
        weights = path / OUR_WEIGHTS
    else:
        cfg = convert.config_from_diffusers(meta, where=str(config_path))
        weights = path / DIFFUSERS_WEIGHTS
    if not weights.is_file():
        raise FileNotFoundError(f"{path}: missing weights file {weights.name}")
    check_safetensors(weights)
    model = cls(cfg)
    _load_checked(model, load_file(str(weights)), weights)
    return model


def check_safetensors(path: Path) -> None:
    """Raise WeightsError naming `path` unless its safetensors header reads; an empty, cut-short or overwritten file
    fails here, before any tensor is loaded (the header records every tensor's extent, checked against the size)."""
    _check_not_empty(path)
    try:
        with safe_open(str(path), framework="pt"):
            pass
    except SafetensorError as e:
        detail = str(e).removeprefix("Error while deserializing header: ")
        raise WeightsError(path, f"cannot read weights {path}: the file is truncated or corrupt (safetensors header: "
                                 f"{detail}); {FIX}") from e


def _check_not_empty(path: Path) -> None:
    """The two cases a reader's own error hides best: an empty file, and a Git LFS pointer in place of the weights."""
    size = path.stat().st_size
    if size == 0:
        raise WeightsError(path, f"cannot read weights {path}: the file is empty (0 bytes); {FIX}")
    with open(path, "rb") as f:
        if f.read(len(LFS_POINTER)) == LFS_POINTER:
            raise WeightsError(path, f"cannot read weights {path}: it is a Git LFS pointer ({size} bytes), not the "
                                     "weights; fetch them with `git lfs pull`, or re-download them")


def safetensors_files(folder: Path) -> list[Path]:
    """The shards a folder's `*.safetensors.index.json` names, else all its `*.safetensors` (maybe none)."""
    indexes = sorted(folder.glob("*.safetensors.index.json"))
    if not indexes:
        return sorted(folder.glob("*.safetensors"))
    index = read_json(indexes[0])
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict):
        raise WeightsError(indexes[0], f"{indexes[0]}: no \"weight_map\" of tensor names to shard files; {FIX}")
    files = [folder / name for name in dict.fromkeys(weight_map.values())]
    absent = [f.name for f in files if not f.is_file()]
    if absent:
        raise FileNotFoundError(f"{indexes[0]} names shard(s) that are missing: {absent}")
    return files


def read_json(path: Path) -> Any:
    """A model folder's JSON file; WeightsError naming it when it is not JSON (cut short, overwritten, empty)."""
    try:
        text = path.read_text(encoding="utf-8")
        if not text.strip():
            raise WeightsError(path, f"cannot read {path}: the file is empty; {FIX}")
        return json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WeightsError(path, f"cannot read {path}: not valid JSON ({e}); {FIX}") from e


def _torch_load(path: Path) -> Any:
    """torch.load(weights_only=True), its failures turned into one WeightsError naming the file."""
    _check_not_empty(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError:
        raise
    except pickle.UnpicklingError as e:
        # torch's message is a page of advice; its one specific line follows "WeightsUnpickler error:".
        detail = (str(e).partition("WeightsUnpickler error:")[2].strip() or str(e)).split("\n")[0].strip()
        if detail.startswith("Unsupported global"):
            detail = detail.partition(" was not an allowed global")[0]
            raise WeightsError(path, f"{path} holds pickled objects besides tensors ({detail}), which are not loaded "
                                     "(weights_only=True) because unpickling them can run code; save its tensors "
                                     "as a plain state dict or as safetensors") from e
        raise WeightsError(path, f"cannot read weights {path}: the file is truncated or corrupt (torch.load: "
                                 f"{detail}); {FIX}") from e
    except (RuntimeError, OSError, EOFError, ValueError) as e:
        detail = str(e).split("\n")[0] or type(e).__name__
        raise WeightsError(path, f"cannot read weights {path}: the file is truncated or corrupt (torch.load: "
                                 f"{detail}); {FIX}") from e


# The original checkpoints we recognise without a config, told apart by their first convolution's weight shape.
ORIGINAL_PRESETS = ("wan2.1", "wan2.2")


def _guess_original_config(sd: Mapping[str, torch.Tensor], path: Path) -> VAEConfig:
    w = sd.get("encoder.conv1.weight")
    if w is None:
        raise WeightsError(
            path, f"{path}: not an original Wan VAE checkpoint (no 'encoder.conv1.weight'; found e.g. {sorted(sd)[:5]})"
        )
    for name in ORIGINAL_PRESETS:
        cfg = PRESETS[name]
        if tuple(w.shape[:2]) == (cfg.base_dim, cfg.pixel_channels):
            return cfg
    known = ", ".join(f"{n}: {(PRESETS[n].base_dim, PRESETS[n].pixel_channels)}" for n in ORIGINAL_PRESETS)
    raise WeightsError(
        path, f"{path}: encoder.conv1.weight has (out, in) channels {tuple(w.shape[:2])}, none of the known "
              f"checkpoints' ({known}); pass config=VAEConfig(...) to load it"
    )


def _load_checked(model: torch.nn.Module, sd: Mapping[str, Any], source: Path) -> None:
    """load_state_dict, with one WeightsError naming missing/unexpected keys and shape or dtype mismatches."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    if len(missing) == len(expected):
        raise WeightsError(source, f"{source}: none of the VAE's {len(expected)} parameters found; is this another "
                                   f"model's file? It holds e.g. {unexpected[:5]}")
    shapes, dtypes = [], []
    for k in sorted(set(sd) & set(expected)):
        if not isinstance(sd[k], torch.Tensor):
            dtypes.append(f"{k} (not a tensor but {type(sd[k]).__name__})")
        elif tuple(sd[k].shape) != tuple(expected[k].shape):
            shapes.append(shape_mismatch(k, sd[k].shape, expected[k].shape))
        elif expected[k].is_floating_point() and not sd[k].is_floating_point():
            dtypes.append(dtype_mismatch(k, sd[k].dtype))
    if missing or unexpected or shapes or dtypes:
        raise mismatch_error(source, "the config's VAE", missing, unexpected, shapes, dtypes)
    model.load_state_dict(sd, strict=True)


def shape_mismatch(name: str, file_shape, model_shape) -> str:
    """`file_shape`: a shape, or already written out (e.g. the pieces of a fused tensor)."""
    shown = file_shape if isinstance(file_shape, str) else tuple(file_shape)
    return f"{name} (file {shown}, model {tuple(model_shape)})"


def dtype_mismatch(name: str, file_dtype) -> str:
    """An integer or boolean tensor where the model holds floating-point numbers: never a precision choice."""
    return f"{name} (file {str(file_dtype).removeprefix('torch.')}, model floating point)"


def mismatch_error(path: str | Path, model: str, missing=(), unexpected=(), shapes=(), dtypes=()) -> WeightsError:
    """One WeightsError for weights that read but do not fit `model`; each list holds names or `*_mismatch` lines."""
    def some(items) -> str:
        return ", ".join(items[:SHOWN]) + (f", ... ({len(items)} in all)" if len(items) > SHOWN else "")

    sections = [("missing keys", missing), ("unexpected keys (not part of this model)", unexpected),
                ("shape mismatches", shapes), ("dtype mismatches", dtypes)]
    found = "; ".join(f"{title}: {some(list(items))}" for title, items in sections if items)
    return WeightsError(path, f"{path}: weights do not match {model}: {found}; re-download them, or check that the "
                              "config belongs to them")


# ---- saving ----------------------------------------------------------------------------------------------------------


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
