"""Training data: media files (videos and images) and precomputed latents, bucketed by (frames, height, width)."""
