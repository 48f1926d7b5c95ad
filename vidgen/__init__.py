"""vidgen: video generation with a causal 3D VAE, a full-3D-attention DiT and flow matching.

Public names are imported lazily (PEP 562) so that `import vidgen` does no heavy work and a
submodule's import cost is paid only by code that uses it.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "DiT": "vidgen.dit.model",
    "DiTConfig": "vidgen.dit.config",
    "VideoPipeline": "vidgen.pipeline",
    "PipelineOutput": "vidgen.pipeline",
    "save_video": "vidgen.video_io",
    "read_video": "vidgen.video_io",
    "VideoWriter": "vidgen.video_io",
    "TextEncoder": "vidgen.text",
    "generate_long_video": "vidgen.long_video",
    "LongVideoConfig": "vidgen.long_video",
    "StepCacheConfig": "vidgen.dit.step_cache",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vidgen' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
