"""`LoraLoaderMixin`: diffusers' LoRA methods on a pipeline whose DiT is `self.dit` (VideoPipeline inherits it).

    pipe.load_lora_weights("style.safetensors", adapter_name="style")
    pipe.load_lora_weights("motion.safetensors", adapter_name="motion")  # now the active one, as in diffusers
    pipe.set_adapters(["style", "motion"], adapter_weights=[1.0, 0.5])
    pipe.fuse_lora()  # merged into the weights: no per-step LoRA cost; pipe.unfuse_lora() takes it out again
    pipe.unload_lora_weights()  # the base model again

Unlike diffusers, `unload_lora_weights` always returns to the base model, fused or not (it unfuses first).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

COMPONENTS = ("transformer",)  # diffusers' name for the one component LoRA files adapt here


class LoraLoaderMixin:
    dit: torch.nn.Module

    @property
    def lora_adapters(self):
        """The `vidgen.lora.adapters.LoraAdapters` of `self.dit` (created on first use: peft is imported then)."""
        from vidgen.lora.adapters import LoraAdapters

        adapters = self.__dict__.get("_lora_adapters")
        if adapters is None or adapters.dit is not self.dit:
            adapters = self.__dict__["_lora_adapters"] = LoraAdapters(self.dit)
        return adapters

    def load_lora_weights(self, pretrained_model_name_or_path_or_dict: str | Path | Mapping[str, torch.Tensor],
                          adapter_name: str | None = None, *, metadata: Mapping[str, Any] | None = None) -> str:
        """Load a LoRA (a .safetensors file or a state dict in the diffusers, Wan/ComfyUI or kohya layout) as a new
        adapter, which becomes the active one (as in diffusers; `set_adapters` combines several); returns its name
        (default `default_<n>`). metadata: diffusers' adapter config (`r`, `lora_alpha`, `alpha_pattern`), for a
        state dict or to override the file's."""
        offload = getattr(self, "offload", None)
        if offload is not None and type(offload).__name__ == "BlockOffload":
            raise ValueError("load_lora_weights: the DiT's blocks are offloaded (offload='blocks'), which keeps copies "
                             "of their weights; load the pipeline without block offload to use LoRA")
        return self.lora_adapters.load(pretrained_model_name_or_path_or_dict, adapter_name, metadata)

    def set_adapters(self, adapter_names: str | Sequence[str],
                     adapter_weights: float | Sequence[float] | None = None) -> None:
        """Make exactly these adapters active, with these weights (default 1.0)."""
        self.lora_adapters.set_adapters(adapter_names, adapter_weights)

    def get_active_adapters(self) -> list[str]:
        return list(self.lora_adapters.active)

    def get_list_adapters(self) -> dict[str, list[str]]:
        """Loaded adapters per component, as diffusers reports them."""
        names = self.lora_adapters.names
        return {COMPONENTS[0]: names} if names else {}

    def disable_lora(self) -> None:
        self.lora_adapters.enable(False)

    def enable_lora(self) -> None:
        self.lora_adapters.enable(True)

    def delete_adapters(self, adapter_names: str | Sequence[str]) -> None:
        self.lora_adapters.delete(adapter_names)

    def fuse_lora(self, components: Sequence[str] = COMPONENTS, lora_scale: float = 1.0, safe_fusing: bool = False,
                  adapter_names: Sequence[str] | None = None) -> None:
        """Merge the active adapters (times lora_scale) into the DiT's weights."""
        _check_components(components)
        self.lora_adapters.fuse(lora_scale, adapter_names, safe_fusing)

    def unfuse_lora(self, components: Sequence[str] = COMPONENTS) -> None:
        _check_components(components)
        self.lora_adapters.unfuse()

    def unload_lora_weights(self) -> None:
        """Remove every adapter and delta: the DiT is the base model again."""
        self.lora_adapters.unload()


def _check_components(components: Sequence[str]) -> None:
    unknown = [c for c in components if c not in COMPONENTS]
    if unknown:
        raise ValueError(f"LoRA components {unknown} are not adapted here; expected {list(COMPONENTS)}")
