"""`--lora FILE[:WEIGHT]` for the generate commands: each file checked before the model loads (it exists, its
safetensors header parses, every key names a module of the model's DiT), then loaded and weighted after."""

from __future__ import annotations

from pathlib import Path

from vidgen.dit import convert_diffusers
from vidgen.lora.files import parse_lora_spec, read_header
from vidgen.lora.keys import KeyTable, parse_key


def check_lora_args(specs: list[str] | None, model_folder: Path) -> tuple[tuple[Path, float], ...]:
    """(path, weight) per `--lora` value, after checking each file's keys against the DiT of `model_folder`."""
    if not specs:
        return ()
    table = KeyTable.build(*_dit_shape(model_folder))
    out = []
    for spec in specs:
        path, weight = parse_lora_spec(spec)
        keys = read_header(path)["keys"]
        if not keys:
            raise ValueError(f"--lora {path}: the file holds no tensors")
        bad = next((k for k in keys if parse_key(k) is None or table.resolve(parse_key(k)) is None), None)
        if bad is not None:
            raise ValueError(f"--lora {path}: key {bad!r} matches no module of the model's DiT; expected a LoRA for "
                             f"Wan 2.1 in the diffusers, Wan/ComfyUI or kohya layout")
        out.append((path, weight))
    return tuple(out)


def _dit_shape(model_folder: Path) -> tuple[int, set[str]]:
    """The DiT's block count (from its config.json, no weights read) and its parameter names."""
    from vidgen.dit.checkpoint import read_config, resolve_folder

    _, config = read_config(resolve_folder(model_folder / "transformer"))
    names = set(convert_diffusers.GLOBAL)
    names |= {f"blocks.{i}.{name}" for i in range(config.num_layers) for name in convert_diffusers.BLOCK}
    return config.num_layers, names


def apply_loras(pipe, loras: tuple[tuple[Path, float], ...]) -> None:
    """Load each (path, weight) as adapter `lora<i>` and make them all active with their weights."""
    if not loras:
        return
    names = [pipe.load_lora_weights(path, adapter_name=f"lora{i}") for i, (path, _) in enumerate(loras)]
    pipe.set_adapters(names, [weight for _, weight in loras])
