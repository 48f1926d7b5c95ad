"""LoRA for the DiT: files in the diffusers, Wan/ComfyUI and kohya layouts loaded as peft adapters
(docs/generating.md, "LoRA"), and adapters trained on a frozen DiT and exported (docs/training.md, "LoRA").

keys.py (the key tables) · files.py (reading) · plan.py (checking a file against a DiT) · inject.py (peft adapters)
· adapters.py (the loaded set) · mixin.py (the pipeline methods) · cli.py (`--lora`) · config.py (LoRAConfig, the
default targets) · train.py (adapters for training) · export.py (the diffusers-layout file). Nothing here imports
peft until an adapter is made: importing peft takes seconds.
"""
