"""Low-rank adapters (LoRA) for the DiT: training them on a frozen model, exporting and loading them."""
