"""The DiT denoiser: config, model, and checkpoint converters (diffusers, original Wan 2.1)."""
