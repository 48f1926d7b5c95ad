"""LoRA file keys -> our DiT's modules and parameters, for the layouts people publish for Wan 2.1.

A LoRA key is `[prefix]NAME.SUFFIX`:
- diffusers / peft: `transformer.blocks.0.attn1.to_q.lora_A.weight` (NAME in `WanTransformer3DModel` names);
- original Wan / ComfyUI: `diffusion_model.blocks.0.self_attn.q.lora_down.weight` (NAME in Wan's names);
- kohya / musubi-tuner: `lora_unet_blocks_0_self_attn_q.lora_down.weight` (Wan's NAME with `.` written `_`);
- ours: `blocks.0.self_attn.qkv.lora_A.weight` (NAME in our names, e.g. what a fused adapter saves).

The name table is not written here: it is the checkpoint converters' (`vidgen.dit.convert_diffusers`,
`vidgen.dit.convert_wan`), read at module level (`x.weight` rows give module `x`). A row added there for loading a
checkpoint (e.g. `cross_attn.k_img.weight`) makes its LoRA keys load too, in all three layouts.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from vidgen.dit import convert_diffusers, convert_wan

# Longest first: `model.diffusion_model.` before `diffusion_model.`.
PREFIXES = ("model.diffusion_model.", "diffusion_model.", "transformer.")
KOHYA_PREFIX = "lora_unet_"

# What each key suffix holds; `down`/`up` in kohya's words are peft's A/B.
SUFFIXES = {
    ".lora_A.weight": "down",
    ".lora_down.weight": "down",
    ".lora_B.weight": "up",
    ".lora_up.weight": "up",
    ".lora_B.bias": "up_bias",  # peft's lora_bias (diffusers writes Wan's `.diff_b` as this)
    ".alpha": "alpha",
    ".diff": "diff",  # a full delta of the module's weight (or of the parameter itself, e.g. `modulation`)
    ".diff_b": "diff_b",  # a delta of the module's bias
}


@dataclass(frozen=True)
class Target:
    """Where a foreign name lands: our name, and which of `parts` equal pieces along dim 0 it is (our fused
    projections: `self_attn.qkv` has 3 parts q|k|v, `cross_attn.kv` 2 parts k|v)."""

    name: str
    part: int = 0
    parts: int = 1


@dataclass(frozen=True)
class LoraKey:
    """A parsed key: the file's key, its layout, the foreign module (or parameter) name, and what it holds."""

    key: str
    layout: str  # "kohya" (underscored names), or "any": diffusers, Wan and our names share one table
    name: str
    kind: str  # a value of SUFFIXES


def parse_key(key: str) -> LoraKey | None:
    """Split a file key into prefix, name and suffix; None for a key with no LoRA suffix."""
    suffix = next((s for s in SUFFIXES if key.endswith(s)), None)
    if suffix is None:
        return None
    name = key[: -len(suffix)]
    if name.startswith(KOHYA_PREFIX):
        return LoraKey(key, "kohya", name[len(KOHYA_PREFIX):], SUFFIXES[suffix])
    prefix = next((p for p in PREFIXES if name.startswith(p)), "")
    return LoraKey(key, "any", name[len(prefix):], SUFFIXES[suffix])


def _param_rows(converter: ModuleType, num_layers: int) -> dict[str, tuple[str, ...]]:
    """our parameter name -> foreign parameter names (concatenated along dim 0), every block spelled out."""
    rows = dict(converter.GLOBAL)
    for i in range(num_layers):
        rows.update({f"blocks.{i}.{ours}": tuple(f"blocks.{i}.{t}" for t in theirs)
                     for ours, theirs in converter.BLOCK.items()})
    return rows


@dataclass(frozen=True)
class KeyTable:
    """Foreign names -> our names for one model: `params` (parameter names, for `.diff`-style deltas) and
    `modules` (module names: the `x` of every `x.weight` row, for LoRA factors), over every layout.

    `kohya` maps kohya's underscore names (without `lora_unet_`) to Wan module names."""

    params: dict[str, Target]
    modules: dict[str, Target]
    kohya: dict[str, str]

    @classmethod
    def build(cls, num_layers: int, our_params: set[str]) -> "KeyTable":
        """The table for a DiT of `num_layers` blocks whose (base) parameter names are `our_params`; rows for
        parameters the model lacks (another variant's) are left out."""
        params: dict[str, Target] = {name: Target(name) for name in our_params}  # our own names
        for converter in (convert_diffusers, convert_wan):
            for ours, theirs in _param_rows(converter, num_layers).items():
                if ours not in our_params:
                    continue
                for i, their in enumerate(theirs):
                    _add(params, their, Target(ours, i, len(theirs)))
        modules = {name[: -len(".weight")]: Target(t.name[: -len(".weight")], t.part, t.parts)
                   for name, t in params.items() if name.endswith(".weight") and t.name.endswith(".weight")}
        wan = {name for ours, theirs in _param_rows(convert_wan, num_layers).items() if ours in our_params
               for name in theirs}
        kohya = {}
        for name in wan:  # Wan parameter `blocks.0.self_attn.q.weight` -> module `blocks.0.self_attn.q`
            module = name[: -len(".weight")] if name.endswith(".weight") else name
            kohya[module.replace(".", "_")] = module
        return cls(params, modules, kohya)

    def resolve(self, key: LoraKey) -> Target | None:
        """Our module (LoRA factors, `.alpha`, `.diff_b`) or parameter (`.diff`) for a parsed key; None if unknown."""
        name = self.kohya.get(key.name) if key.layout == "kohya" else key.name
        if name is None:
            return None
        if key.kind == "diff":  # a module's weight, or a parameter named directly (`blocks.0.modulation.diff`)
            return self.params.get(f"{name}.weight") or self.params.get(name)
        if key.kind == "diff_b":
            return self.params.get(f"{name}.bias")
        return self.modules.get(name)


def _add(table: dict[str, Target], name: str, target: Target) -> None:
    old = table.setdefault(name, target)
    if old != target:  # two layouts spelling one name for two different parameters: a bug in a converter table
        raise RuntimeError(f"LoRA key table: {name!r} maps to both {old} and {target}")
