"""A LoRA file checked against a DiT and turned into what loading it changes, before anything is changed.

For each of our linear modules the file touches: one LoRA pair (A `(R, in)`, B `(out, R)`) with every scale folded
into B, so that the update is exactly B @ A. A fused projection (`self_attn.qkv` = q|k|v, `cross_attn.kv` = k|v) gets
its parts' separate LoRAs as one: A = [A_q; A_k; A_v] (rank r_q + r_k + r_v), B block-diagonal with s_i·B_i in part
i's rows and columns; a part the file lacks has no columns and zero rows. Then B @ A = [s_q B_q A_q; ...], exactly the
separate updates stacked. For each parameter with `.diff` / `.diff_b` / `lora_B.bias` keys: one full-shape delta.

Scales: `.alpha` keys give alpha/rank per module; else diffusers' adapter config (`lora_alpha`, `alpha_pattern`,
`use_rslora`: alpha/√rank); else 1.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
import torch
import torch.nn as nn

from vidgen.dit.fp8 import FP8Linear
from vidgen.lora.files import LoraSource
from vidgen.lora.keys import KeyTable, LoraKey, parse_key


@dataclass(frozen=True)
class LoraPlan:
    """What a checked LoRA adds: `factors` module -> (A `(R, in)`, B `(out, R)`) fp32, update B @ A; `deltas`
    parameter -> fp32 delta of its full shape. `label` names the file."""

    label: str
    factors: dict[str, tuple[torch.Tensor, torch.Tensor]]
    deltas: dict[str, torch.Tensor]


def base_linear(dit: nn.Module, name: str) -> nn.Module:
    """Our module `name`, or the layer a peft adapter wraps there."""
    try:
        module = dit.get_submodule(name)
    except AttributeError:
        raise ValueError(f"the DiT has no module {name!r}; expected a name such as 'blocks.0.self_attn.qkv'") from None
    return module.get_base_layer() if hasattr(module, "get_base_layer") else module


def base_param_names(dit: nn.Module) -> set[str]:
    """Parameter names as the DiT has them without adapters (peft's `base_layer.` removed, adapter weights left out)."""
    return {n.replace(".base_layer.", ".") for n, _ in dit.named_parameters() if ".lora_" not in n}


def plan_lora(dit: nn.Module, source: LoraSource) -> LoraPlan:
    """Check every key, shape and scale of `source` against `dit`; ValueError naming the file and the first bad key."""
    if not source.tensors:
        raise ValueError(f"{source.label}: the LoRA holds no tensors")
    if any(isinstance(m, FP8Linear) for m in dit.modules()):
        raise ValueError(f"{source.label}: this DiT holds fp8 weights (quantize_fp8 / --fp8); LoRA loads into the "
                         f"linear layers of an unquantized DiT: load it without fp8")
    if source.config.get("use_dora"):
        raise ValueError(f"{source.label}: a DoRA adapter (use_dora); only plain LoRA files load")
    pieces, n_parts = _group_keys(dit, source)
    factors, deltas = {}, {}
    for (group, name), parts in pieces.items():
        if group == "module":
            factor, bias = _module_update(dit, name, n_parts[name], parts, source)
            if factor is not None:
                factors[name] = factor
            if bias is not None:
                _accumulate(deltas, f"{name}.bias", bias)
        else:
            _accumulate(deltas, name, _param_delta(dit, name, n_parts[name], parts, source))
    return LoraPlan(source.label, factors, deltas)


Pieces = dict[tuple[str, str], dict[int, dict[str, tuple[LoraKey, torch.Tensor]]]]


def _group_keys(dit: nn.Module, source: LoraSource) -> tuple[Pieces, dict[str, int]]:
    """Every key resolved and grouped: ("module" | "param", our name) -> part -> kind -> (key, tensor); and per our
    name, how many foreign projections it fuses."""
    table = KeyTable.build(dit.config.num_layers, base_param_names(dit))
    pieces: Pieces = {}
    n_parts: dict[str, int] = {}
    for key, tensor in source.tensors.items():
        parsed = parse_key(key)
        target = None if parsed is None else table.resolve(parsed)
        if target is None:
            raise ValueError(f"{source.label}: key {key!r} matches no module of this DiT; expected LoRA keys in the "
                             f"diffusers, Wan/ComfyUI or kohya layout (e.g. "
                             f"'transformer.blocks.0.attn1.to_q.lora_A.weight')")
        if not tensor.is_floating_point():
            raise ValueError(f"{source.label}: key {key!r} holds {tensor.dtype}; expected floating point")
        group = "param" if parsed.kind in ("diff", "diff_b") else "module"
        n_parts[target.name] = target.parts
        slot = pieces.setdefault((group, target.name), {}).setdefault(target.part, {})
        if parsed.kind in slot:
            raise ValueError(f"{source.label}: key {key!r} repeats {slot[parsed.kind][0].key!r} (the same "
                             f"{target.name} part)")
        slot[parsed.kind] = (parsed, tensor)
    return pieces, n_parts


def _accumulate(deltas: dict[str, torch.Tensor], name: str, delta: torch.Tensor) -> None:
    deltas[name] = deltas[name] + delta if name in deltas else delta


def _module_update(dit: nn.Module, name: str, n: int, parts: dict[int, dict], source: LoraSource):
    """(A, B) or None, and a bias delta or None, for our module `name` (fusing `n` projections) from its parts'
    keys."""
    layer = base_linear(dit, name)
    if not isinstance(layer, nn.Linear):
        first_key = next(iter(next(iter(parts.values())).values()))[0]
        raise ValueError(f"{source.label}: key {first_key.key!r} targets {name}, a {type(layer).__name__}; LoRA "
                         f"factors load into linear layers (other weights take `.diff` deltas)")
    rows = layer.out_features // n
    where = name if n == 1 else f"{name} part {{}} of {n}"
    downs, ups, bias = [], [], None
    for i, got in sorted(parts.items()):
        factor, b = _part(layer, rows, where.format(i + 1), got, source)
        if factor is not None:
            downs.append(factor[0])
            ups.append((i, factor[1]))
        if b is not None:
            bias = torch.zeros(layer.out_features) if bias is None else bias
            bias[i * rows:(i + 1) * rows] = b
    if not downs:
        return None, bias
    a = torch.cat(downs)  # (R, in), R = Σ r_i
    b = torch.zeros(layer.out_features, a.shape[0])  # (out, R): block i in part i's rows, its own rank's columns
    col = 0
    for i, up in ups:
        b[i * rows:(i + 1) * rows, col:col + up.shape[1]] = up
        col += up.shape[1]
    return (a, b), bias


def _part(layer: nn.Linear, rows: int, where: str, got: dict, source: LoraSource):
    """One projection's (down `(r, in)`, scale·up `(rows, r)`) or None, and its scaled bias `(rows,)` or None, fp32."""
    kinds = {k: v for k, (_, v) in got.items()}
    key = next(iter(got.values()))[0]
    if ("down" in kinds) != ("up" in kinds) or ("alpha" in kinds and "down" not in kinds):
        missing = "down/lora_A" if "down" not in kinds else "up/lora_B"
        raise ValueError(f"{source.label}: key {key.key!r} has no matching {missing} weight")
    factor, scale = None, 1.0
    if "down" in kinds:
        down, up = kinds["down"], kinds["up"]
        rank = down.shape[0]
        if down.ndim != 2 or down.shape[1] != layer.in_features or up.ndim != 2 or up.shape != (rows, rank):
            raise ValueError(f"{source.label}: key {got['down'][0].key!r} has shape {tuple(down.shape)} with up "
                             f"{tuple(up.shape)}; expected (rank, {layer.in_features}) and ({rows}, rank) for "
                             f"{where}")
        scale = _scale(kinds.get("alpha"), rank, key, source, got)
        factor = (down.float(), scale * up.float())
    bias = kinds.get("up_bias")
    if bias is not None:
        bias_key = got["up_bias"][0].key
        if bias.shape != (rows,):
            raise ValueError(f"{source.label}: key {bias_key!r} has shape {tuple(bias.shape)}; expected ({rows},) "
                             f"for {where}")
        if layer.bias is None:
            raise ValueError(f"{source.label}: key {bias_key!r} is a bias for {where}, which has none")
        bias = scale * bias.float()
    return factor, bias


def _scale(alpha: torch.Tensor | None, rank: int, key: LoraKey, source: LoraSource, got: dict) -> float:
    """alpha / rank from a `.alpha` key, else from the adapter config (alpha / √rank with use_rslora), else 1."""
    config = source.config
    if alpha is not None:
        if alpha.numel() != 1:
            raise ValueError(f"{source.label}: key {got['alpha'][0].key!r} has shape {tuple(alpha.shape)}; "
                             f"expected one number")
        return float(alpha) / rank
    if "lora_alpha" not in config:
        return 1.0
    value = config["lora_alpha"]
    for pattern, a in (config.get("alpha_pattern") or {}).items():
        if re.match(rf"(.*\.)?({pattern})$", key.name):  # peft's rule: the pattern matches the name's tail
            value = a
            break
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ValueError(f"{source.label}: adapter metadata lora_alpha {value!r} is not a number")
    return value / (math.sqrt(rank) if config.get("use_rslora") else rank)


def _param_delta(dit: nn.Module, name: str, n: int, parts: dict[int, dict], source: LoraSource) -> torch.Tensor:
    """The full-shape delta of our parameter `name` (fusing `n` pieces) from its parts' `.diff` / `.diff_b` keys."""
    module_name, _, leaf = name.rpartition(".")
    param = getattr(base_linear(dit, module_name) if module_name else dit, leaf)
    rows = param.shape[0] // n
    delta = torch.zeros(param.shape)
    for i, got in parts.items():
        for key, tensor in got.values():
            expected = (rows, *param.shape[1:])
            if tuple(tensor.shape) != expected:
                raise ValueError(f"{source.label}: key {key.key!r} has shape {tuple(tensor.shape)}; expected "
                                 f"{expected} for {name}" + (f" part {i + 1} of {n}" if n > 1 else ""))
            delta[i * rows:(i + 1) * rows] += tensor.float()
    return delta

