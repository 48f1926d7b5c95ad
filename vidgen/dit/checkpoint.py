"""Loading and saving DiT weights: our folder, diffusers `WanTransformer3DModel`, original Wan 2.1.

Loading builds the model on the meta device and moves each tensor from the safetensors files straight into its place,
one tensor at a time, so a checkpoint never needs twice its size in memory. Only safetensors are read (no pickle).
Every file's header is checked before the first tensor is read; any problem is one `WeightsError` naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import save_file

from causal_vae.io import (
    WeightsError, check_safetensors, dtype_mismatch, mismatch_error, read_json, safetensors_files, shape_mismatch,
)
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
    """The safetensors shards of a folder: those named by a `*.safetensors.index.json`, else all `*.safetensors`;
    each one's header checked."""
    files = safetensors_files(folder)
    if not files:
        raise FileNotFoundError(f"no *.safetensors weights in {folder} (pickled .pth/.bin checkpoints are not loaded)")
    for file in files:
        check_safetensors(file)
    return files


def read_config(folder: Path) -> tuple[str, DiTConfig]:
    raw = read_json(folder / CONFIG_FILE)
    if not isinstance(raw, dict):
        raise WeightsError(folder / CONFIG_FILE, f"{folder / CONFIG_FILE}: expected a JSON object of config fields, "
                                                 f"got a {type(raw).__name__}")
    fmt = detect_format(raw)
    if fmt == "vidgen":
        fields = {k: v for k, v in raw.items() if not k.startswith("_")}
        return fmt, from_dict(DiTConfig, fields, where=str(folder / CONFIG_FILE))
    if fmt == "wan":  # whether an original checkpoint has the CLIP branch shows in its weights, not its config
        return fmt, convert_wan.config_to_ours(raw, _image_branch_shapes(folder))
    return fmt, FOREIGN_FORMATS[fmt].config_to_ours(raw)


def _image_branch_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    """Shapes of an original Wan checkpoint's image-branch tensors, read from the safetensors headers (cheap)."""
    wanted = (convert_wan.IMAGE_NORM, convert_wan.IMAGE_POSITION)
    shapes = {}
    for file in safetensors_files(folder):
        check_safetensors(file)
        with safe_open(file, "pt") as f:
            for key in f.keys():
                name = _strip(key, convert_wan.KEY_PREFIXES)
                if name in wanted:
                    shapes[name] = tuple(f.get_slice(key).get_shape())
    return shapes


def _strip(key: str, prefixes: tuple[str, ...]) -> str:
    return next((key[len(p):] for p in prefixes if key.startswith(p)), key)


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


def load_dit(path: str | Path, build: Callable[[DiTConfig], nn.Module], dtype: torch.dtype | None = None,
             device: str | torch.device = "cpu") -> nn.Module:
    """The model that `build(config)` makes (`DiT`, for `DiT.from_pretrained`), filled from a checkpoint folder."""
    folder = resolve_folder(path)
    fmt, config = read_config(folder)
    with torch.device("meta"):
        model = build(config)
    table = key_table(fmt, config, model)
    prefixes = () if fmt == "vidgen" else FOREIGN_FORMATS[fmt].KEY_PREFIXES
    files = weight_files(folder)
    # A problem names the one weights file, or the index that lists the shards.
    where = files[0] if len(files) == 1 else next(iter(sorted(folder.glob("*.safetensors.index.json"))), folder)
    load_tensors(model, files, table, prefixes, dtype, torch.device(device), where=str(where))
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

    Raises one WeightsError (naming `where`) listing every missing key, unexpected key, shape and dtype mismatch.
    """
    source = {their: (ours, i) for ours, theirs in table.items() for i, their in enumerate(theirs)}
    params = dict(model.named_parameters())
    pending: dict[str, list[torch.Tensor | None]] = {}
    loaded: set[str] = set()
    unexpected: list[str] = []
    shapes: list[str] = []
    dtypes: list[str] = []
    for file in files:
        with safe_open(str(file), framework="pt", device="cpu") as f:
            for key in f.keys():
                name = _strip(key, prefixes)
                if name not in source:
                    unexpected.append(key)
                    continue
                ours, i = source[name]
                parts = pending.setdefault(ours, [None] * len(table[ours]))
                parts[i] = f.get_tensor(key)
                if any(p is None for p in parts):
                    continue  # a fused parameter waits for its other pieces (possibly in a later shard)
                del pending[ours]
                loaded.add(ours)
                label = ours if table[ours] == (ours,) else f"{ours} <- {' + '.join(table[ours])}"
                label += f" in {file.name}" if len(files) > 1 else ""
                expected = params[ours]
                # Fused pieces are stacked along dim 0: their other dims must agree, and the stack match the model.
                stacked = (sum(p.shape[0] for p in parts), *parts[0].shape[1:]) if all(p.ndim for p in parts) else ()
                if len({p.shape[1:] for p in parts}) > 1 or stacked != tuple(expected.shape):
                    shapes.append(shape_mismatch(label, " + ".join(str(tuple(p.shape)) for p in parts),
                                                 expected.shape))
                    continue
                wrong = [p.dtype for p in parts if not p.is_floating_point()]
                if expected.is_floating_point() and wrong:
                    dtypes.append(dtype_mismatch(label, wrong[0]))
                    continue
                tensor = parts[0] if len(parts) == 1 else torch.cat(parts)
                if dtype is None and tensor.is_floating_point():
                    dtype = tensor.dtype  # keep the checkpoint's precision
                _assign(model, ours, tensor, dtype, device)

    def lacking(ours: str) -> str:  # a renamed or fused parameter names the checkpoint keys it still lacks
        theirs = table[ours]
        if theirs == (ours,):
            return ours
        found = pending.get(ours, [None] * len(theirs))
        return f"{ours} (needs {' + '.join(t for t, p in zip(theirs, found) if p is None)})"

    missing = [lacking(ours) for ours in table if ours not in loaded]
    if missing or unexpected or shapes or dtypes:
        raise mismatch_error(where, "the config's DiT", missing, unexpected, shapes, dtypes)


def _assign(model: nn.Module, name: str, tensor: torch.Tensor, dtype, device) -> None:
    module_name, _, leaf = name.rpartition(".")
    module = model.get_submodule(module_name)
    old = module._parameters[leaf]
    value = tensor.to(device=device, dtype=dtype if tensor.is_floating_point() else None)
    module._parameters[leaf] = nn.Parameter(value, requires_grad=old.requires_grad)


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
    if any(type(m).__name__ == "FP8Linear" for m in model.modules()):
        raise ValueError("this DiT holds fp8 weights (quantize_fp8), which are not saved; save the model before "
                         "quantizing it, or load it again without fp8")
    if any(hasattr(m, "lora_A") for m in model.modules()):
        raise ValueError("this DiT holds LoRA adapter layers, whose names are not the checkpoint's; call "
                         "unload_lora_weights() (or LoraAdapters.unload) before saving")
    if (folder / CONFIG_FILE).exists() and not overwrite:
        raise FileExistsError(f"{folder} already holds a checkpoint; pass overwrite=True to replace it")
    folder.mkdir(parents=True, exist_ok=True)
    weights = WEIGHTS_FILE if fmt == "vidgen" else "diffusion_pytorch_model.safetensors"
    tensors = {k: v.cpu().contiguous() for k, v in export_state_dict(model, fmt).items()}
    write_atomic(folder / weights, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))
    text = json.dumps(export_config(model.config, fmt), indent=2) + "\n"
    write_atomic(folder / CONFIG_FILE, lambda tmp: tmp.write_text(text))  # written last: marks the folder complete
