"""The LoRA adapters loaded into one DiT: load, weight, fuse, unfuse, delete, unload.

Factor pairs live in peft layers (vidgen/lora/inject.py), one adapter per loaded file. Full deltas (`.diff`,
`.diff_b`, `lora_B.bias`) are not factors: the parameters they touch are kept as copies of their original values and
recomputed as original + Σ weight·delta over the active adapters whenever the set changes, so unloading (or turning
every adapter off) restores them bit for bit.

Fusing merges the active adapters' factors into the base weights (peft's merge, in the weights' dtype); unfusing
subtracts them again, exact up to rounding. While fused, the adapter set is frozen: unfuse first.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn

from vidgen.lora.files import read_lora
from vidgen.lora.inject import add_lora, adapter_names, check_adapter_name, lora_layers, remove_lora_layers
from vidgen.lora.plan import LoraPlan, base_linear, plan_lora


class LoraAdapters:
    """Adapters of `dit` by name, in load order, with their weights (1.0 when loaded) and which are active."""

    def __init__(self, dit: nn.Module):
        self.dit = dit
        self.weights: dict[str, float] = {}
        self.active: list[str] = []
        self.enabled = True
        self.fused_names: list[str] = []  # the adapters merged into the weights, with factor _fuse_scale
        self._fuse_scale = 1.0
        self._deltas: dict[str, dict[str, torch.Tensor]] = {}  # adapter -> parameter -> fp32 delta (CPU)
        self._original: dict[str, torch.Tensor] = {}  # parameter -> its value before any delta

    @property
    def names(self) -> list[str]:
        return list(self.weights)

    @property
    def fused(self) -> bool:
        return bool(self.fused_names)

    def load(self, source: str | Path | Mapping[str, torch.Tensor], adapter_name: str | None = None,
             metadata: Mapping[str, Any] | None = None) -> str:
        """Load a LoRA file or state dict as a new adapter (weight 1); returns its name. As in diffusers, it becomes
        the one active adapter (`set_adapters` combines several). Everything is checked first: on a ValueError the
        model is unchanged."""
        self._check_unfused("load_lora_weights")
        name = adapter_name if adapter_name is not None else free_name(self.names + adapter_names(self.dit))
        check_adapter_name(self.dit, name)
        if name in self.weights:
            raise ValueError(f"adapter name {name!r} is already loaded (adapters: {self.names}); pick another")
        plan = plan_lora(self.dit, read_lora(source, metadata))
        if plan.factors:
            add_lora(self.dit, name, {m: a.shape[0] for m, (a, _) in plan.factors.items()})
            self._fill(name, plan)
        self.weights[name] = 1.0
        self.active = [name]
        self._deltas[name] = plan.deltas
        for param in plan.deltas:
            if param not in self._original:
                self._original[param] = self._param(param).detach().clone()
        self._apply()
        return name

    def _fill(self, name: str, plan: LoraPlan) -> None:
        with torch.no_grad():
            for module, (a, b) in plan.factors.items():
                layer = self.dit.get_submodule(module)
                layer.lora_A[name].weight.copy_(a)
                layer.lora_B[name].weight.copy_(b)
                for p in (layer.lora_A[name].weight, layer.lora_B[name].weight):
                    p.requires_grad_(False)  # loaded adapters are inference weights

    def set_adapters(self, names: str | Sequence[str], weights: float | Sequence[float] | None = None) -> None:
        """Make exactly `names` active, with `weights` (one per name, one for all, or 1.0)."""
        self._check_unfused("set_adapters")
        names = [names] if isinstance(names, str) else list(names)
        unknown = [n for n in names if n not in self.weights]
        if unknown:
            raise ValueError(f"unknown adapter(s) {unknown}; loaded: {self.names}")
        if weights is None or isinstance(weights, (int, float)):
            weights = [1.0 if weights is None else float(weights)] * len(names)
        weights = list(weights)
        if len(weights) != len(names) or not all(isinstance(w, (int, float)) for w in weights):
            raise ValueError(f"got adapter_weights {weights!r} for {len(names)} adapter(s); expected one number each")
        self.weights.update(zip(names, map(float, weights)))
        self.active = names
        self._apply()

    def enable(self, enabled: bool) -> None:
        """Turn every adapter's effect on or off without forgetting the active set and weights."""
        self._check_unfused("enable_lora" if enabled else "disable_lora")
        self.enabled = enabled
        self._apply()

    def fuse(self, lora_scale: float = 1.0, adapter_names: Sequence[str] | None = None,
             safe_fusing: bool = False) -> None:
        """Merge the active adapters (or `adapter_names`), times `lora_scale`, into the base weights."""
        self._check_unfused("fuse_lora")
        names = self.active if adapter_names is None else list(adapter_names)
        unknown = [n for n in names if n not in self.weights]
        if unknown:
            raise ValueError(f"unknown adapter(s) {unknown}; loaded: {self.names}")
        if not self.enabled:
            raise ValueError("the adapters are disabled (disable_lora); enable_lora() before fusing")
        self.fused_names = list(names)
        self._fuse_scale = lora_scale
        self._apply_deltas()  # before merging: recomputing a delta'd weight must not wipe a merge
        for _, layer in lora_layers(self.dit):
            present = [n for n in names if n in layer.lora_A]
            if present:
                _scale_layer(layer, present, self.weights, lora_scale)
                layer.merge(safe_merge=safe_fusing, adapter_names=present)

    def unfuse(self) -> None:
        """Subtract the fused adapters from the base weights again (the adapters stay loaded)."""
        if not self.fused:
            return
        for _, layer in lora_layers(self.dit):
            _scale_layer(layer, self.fused_names, self.weights, self._fuse_scale)  # what was merged comes out
            layer.unmerge()
        self.fused_names = []
        self._fuse_scale = 1.0
        self._apply()

    def delete(self, names: str | Sequence[str]) -> None:
        """Remove adapters; with none left the model is back to its base weights."""
        self._check_unfused("delete_adapters")
        names = [names] if isinstance(names, str) else list(names)
        unknown = [n for n in names if n not in self.weights]
        if unknown:
            raise ValueError(f"unknown adapter(s) {unknown}; loaded: {self.names}")
        for n in names:
            for _, layer in lora_layers(self.dit):
                if n in layer.lora_A:
                    with warnings.catch_warnings():  # peft's note that it picked another active adapter: we set ours
                        warnings.simplefilter("ignore")
                        layer.delete_adapter(n)
            getattr(self.dit, "peft_config", {}).pop(n, None)
            del self.weights[n], self._deltas[n]
        self.active = [n for n in self.active if n in self.weights]
        if not self.weights:
            self.unload()
        else:
            self._apply()

    def unload(self) -> None:
        """Unfuse, drop every adapter layer and delta: the model is the base model again."""
        self.unfuse()
        remove_lora_layers(self.dit)
        self.weights, self.active, self._deltas = {}, [], {}
        self.enabled = True
        self._apply()
        self._original = {}

    # ---- internals -------------------------------------------------------------------------------------------------

    def _check_unfused(self, what: str) -> None:
        if self.fused:
            raise ValueError(f"{what}: the LoRA adapters are fused into the weights; call unfuse_lora() first")

    def _param(self, name: str) -> torch.Tensor:
        module_name, _, leaf = name.rpartition(".")
        return getattr(base_linear(self.dit, module_name) if module_name else self.dit, leaf)

    def _apply(self) -> None:
        """Point every peft layer at the active adapters with their weights, and recompute the delta'd parameters."""
        for _, layer in lora_layers(self.dit):
            layer.set_adapter([n for n in self.active if n in layer.lora_A], inference_mode=True)
            _scale_layer(layer, self.active, self.weights, 1.0)
            if layer.disable_adapters == self.enabled:
                layer.enable_adapters(self.enabled)
        self._apply_deltas()

    def _apply_deltas(self) -> None:
        """Each delta'd parameter = original + Σ weight·delta over the active adapters; while fused, over the fused
        ones times the fuse's lora_scale (a merged layer computes only what was merged, as peft's do)."""
        on = self.fused_names if self.fused else self.active if self.enabled else []
        with torch.no_grad():
            for param, original in self._original.items():
                target = self._param(param)
                touched = [n for n in on if param in self._deltas[n]]
                if not touched:
                    target.copy_(original)  # bit for bit the value before any delta
                    continue
                value = original.float()
                for n in touched:
                    value = value + self.weights[n] * self._fuse_scale * self._deltas[n][param].to(value.device)
                target.copy_(value)


def _scale_layer(layer, names: Sequence[str], weights: Mapping[str, float], factor: float) -> None:
    """Each of `names` the layer holds scaled by its weight times `factor` (peft's scale is alpha/r times that)."""
    for n in names:
        layer.set_scale(n, weights[n] * factor)


def free_name(taken: list[str]) -> str:
    """The first `default_<n>` not in `taken`, n counting from the adapters already there (as diffusers names)."""
    i = len(set(taken))
    while f"default_{i}" in taken:
        i += 1
    return f"default_{i}"
