"""The procedural "shapes" world (issue 7): rendering, datasets, judging generated clips, and its small text encoder."""
