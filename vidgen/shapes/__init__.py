"""The procedural "shapes" world: rendering, datasets, judging generated clips, and its small text encoder."""
