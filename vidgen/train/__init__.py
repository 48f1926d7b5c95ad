"""Training: the flow-matching DiT trainer and the VAE trainer on accelerate, with resumable checkpoints."""
