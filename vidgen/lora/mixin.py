"""`LoraLoaderMixin`: diffusers' LoRA methods on a pipeline whose DiT is `self.dit` (VideoPipeline inherits it), and
whose second expert, if any, is `self.dit_2`.

    pipe.load_lora_weights("style.safetensors", adapter_name="style")
    pipe.load_lora_weights("motion.safetensors", adapter_name="motion")  # now the active one, as in diffusers
    pipe.set_adapters(["style", "motion"], adapter_weights=[1.0, 0.5])
    pipe.fuse_lora()  # merged into the weights: no per-step LoRA cost; pipe.unfuse_lora() takes it out again
    pipe.unload_lora_weights()  # the base model again
    pipe.load_lora_weights("low.safetensors", adapter_name="low", load_into_transformer_2=True)  # Wan 2.2 A14B

Unlike diffusers, `unload_lora_weights` always returns to the base model, fused or not (it unfuses first).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

COMPONENTS = ("transformer", "transformer_2")  # diffusers' names: the DiT, and the second expert of Wan 2.2 A14B


class LoraLoaderMixin:
    """LoRA on `self.dit`, and on `self.dit_2` (the low-noise expert) when a file is loaded with
    `load_into_transformer_2=True`, as diffusers does for Wan 2.2 A14B. Calls that name adapters act on whichever
    expert holds them."""

    dit: torch.nn.Module
    dit_2: torch.nn.Module | None = None

    @property
    def lora_adapters(self):
        """The `vidgen.lora.adapters.LoraAdapters` of `self.dit` (created on first use: peft is imported then)."""
        return self._adapters("dit")

    def _adapters(self, attr: str):
        from vidgen.lora.adapters import LoraAdapters

        module, key = getattr(self, attr), f"_lora_adapters_{attr}"
        adapters = self.__dict__.get(key)
        if adapters is None or adapters.dit is not module:
            adapters = self.__dict__[key] = LoraAdapters(module)
        return adapters

    def _all_adapters(self) -> list:
        """Per expert (the DiT, then the second expert if any), its adapters."""
        return [self._adapters(attr) for attr in ("dit", "dit_2") if getattr(self, attr, None) is not None]

    def load_lora_weights(self, pretrained_model_name_or_path_or_dict: str | Path | Mapping[str, torch.Tensor],
                          adapter_name: str | None = None, *, metadata: Mapping[str, Any] | None = None,
                          load_into_transformer_2: bool = False) -> str:
        """Load a LoRA (a .safetensors file or a state dict in the diffusers, Wan/ComfyUI or kohya layout) as a new
        adapter, which becomes the active one (as in diffusers; `set_adapters` combines several); returns its name
        (default `default_<n>`). metadata: diffusers' adapter config (`r`, `lora_alpha`, `alpha_pattern`), for a
        state dict or to override the file's. load_into_transformer_2: into the second expert (Wan 2.2 A14B's
        low-noise one) instead of the first."""
        offload = getattr(self, "offload", None)
        if offload is not None and type(offload).__name__ in ("BlockOffload", "Offloads"):
            raise ValueError("load_lora_weights: the DiT's blocks are offloaded (offload='blocks'), which keeps copies "
                             "of their weights; load the pipeline without block offload to use LoRA")
        if load_into_transformer_2 and getattr(self, "dit_2", None) is None:
            raise ValueError("load_into_transformer_2=True: this model has one expert (no transformer_2)")
        from vidgen.lora.adapters import free_name

        taken = [n for adapters in self._all_adapters() for n in adapters.names]
        if adapter_name is not None and adapter_name in taken:
            raise ValueError(f"adapter name {adapter_name!r} is already loaded (adapters: {taken}); pick another")
        adapter_name = free_name(taken) if adapter_name is None else adapter_name  # unique over both experts
        target = self._adapters("dit_2" if load_into_transformer_2 else "dit")
        return target.load(pretrained_model_name_or_path_or_dict, adapter_name, metadata)

    def set_adapters(self, adapter_names: str | Sequence[str],
                     adapter_weights: float | Sequence[float] | None = None) -> None:
        """Make exactly these adapters active, with these weights (default 1.0), on whichever expert holds each."""
        names = [adapter_names] if isinstance(adapter_names, str) else list(adapter_names)
        if adapter_weights is None or isinstance(adapter_weights, (int, float)):
            adapter_weights = [1.0 if adapter_weights is None else adapter_weights] * len(names)
        adapter_weights = list(adapter_weights)
        if len(adapter_weights) != len(names):
            raise ValueError(f"got adapter_weights {adapter_weights!r} for {len(names)} adapter(s); expected one "
                             "number each")
        weights = dict(zip(names, adapter_weights))
        for adapters in self._holding(names):
            mine = [n for n in names if n in adapters.names]
            adapters.set_adapters(mine, [weights[n] for n in mine])

    def get_active_adapters(self) -> list[str]:
        return [n for adapters in self._all_adapters() for n in adapters.active]

    def get_list_adapters(self) -> dict[str, list[str]]:
        """Loaded adapters per component, as diffusers reports them."""
        return {component: adapters.names for component, adapters in zip(COMPONENTS, self._all_adapters())
                if adapters.names}

    def disable_lora(self) -> None:
        for adapters in self._all_adapters():
            adapters.enable(False)

    def enable_lora(self) -> None:
        for adapters in self._all_adapters():
            adapters.enable(True)

    def delete_adapters(self, adapter_names: str | Sequence[str]) -> None:
        names = [adapter_names] if isinstance(adapter_names, str) else list(adapter_names)
        for adapters in self._holding(names):
            mine = [n for n in names if n in adapters.names]
            if mine:
                adapters.delete(mine)

    def fuse_lora(self, components: Sequence[str] = COMPONENTS, lora_scale: float = 1.0, safe_fusing: bool = False,
                  adapter_names: Sequence[str] | None = None) -> None:
        """Merge the active adapters (or `adapter_names`), times lora_scale, into the weights of `components`."""
        for adapters in self._components(components):
            names = None if adapter_names is None else [n for n in adapter_names if n in adapters.names]
            adapters.fuse(lora_scale, names, safe_fusing)

    def unfuse_lora(self, components: Sequence[str] = COMPONENTS) -> None:
        for adapters in self._components(components):
            adapters.unfuse()

    def unload_lora_weights(self) -> None:
        """Remove every adapter and delta: the DiT (and the second expert) is the base model again."""
        for adapters in self._all_adapters():
            adapters.unload()

    def _holding(self, names: list[str]) -> list:
        """Every expert's adapters, after checking that each of `names` is loaded on one of them."""
        everyone = self._all_adapters()
        unknown = [n for n in names if not any(n in a.names for a in everyone)]
        if unknown:
            raise ValueError(f"unknown adapter(s) {unknown}; loaded: {[n for a in everyone for n in a.names]}")
        return everyone

    def _components(self, components: Sequence[str]) -> list:
        components = [components] if isinstance(components, str) else list(components)
        unknown = [c for c in components if c not in COMPONENTS]
        if unknown:
            raise ValueError(f"LoRA components {unknown} are not adapted here; expected {list(COMPONENTS)}")
        return [a for c, a in zip(COMPONENTS, self._all_adapters()) if c in components]
