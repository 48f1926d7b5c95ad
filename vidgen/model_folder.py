"""What a model folder is: our saved pipeline, or a diffusers-format Wan 2.1 text-to-video folder. Checked cheaply,
file by file, so a wrong folder fails with the name of the missing file before any weights are read."""

from __future__ import annotations

import json
from pathlib import Path

from vidgen.config_io import from_dict
from vidgen.request import PipelineConfig

OUR_CONFIG = "vidgen_pipeline.json"
DIFFUSERS_INDEX = "model_index.json"
DEFAULT_MODEL_DIR = Path(__file__).parent / "assets" / "default"

# Each component folder needs its config; weights are checked by the component loaders themselves.
_COMPONENT_FILES = {
    "transformer": ("config.json",),
    "vae": ("config.json",),
    "text_encoder": ("config.json",),
    "tokenizer": ("tokenizer_config.json",),
}


def find_model_folder(folder: str | Path) -> tuple[Path, str]:
    """(folder, "vidgen" | "diffusers"); FileNotFoundError naming the first missing file otherwise."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder {str(folder)!r} does not exist (or is not a folder)")
    if (folder / OUR_CONFIG).is_file():
        kind = "vidgen"
    elif (folder / DIFFUSERS_INDEX).is_file():
        kind = "diffusers"
        _check_diffusers_index(folder)
    else:
        raise FileNotFoundError(f"{str(folder)!r} is not a model folder: it has neither {OUR_CONFIG} (a vidgen "
                                f"pipeline) nor {DIFFUSERS_INDEX} (a diffusers Wan 2.1 pipeline)")
    required = dict(_COMPONENT_FILES)
    if kind == "diffusers":
        required["scheduler"] = ("scheduler_config.json",)
    for sub, files in required.items():
        for name in files:
            if not (folder / sub / name).is_file():
                raise FileNotFoundError(f"{str(folder)!r} is not a complete model folder: {sub}/{name} is missing")
    return folder, kind


def _check_diffusers_index(folder: Path) -> None:
    index = json.loads((folder / DIFFUSERS_INDEX).read_text())
    name = index.get("_class_name")
    if name != "WanPipeline":
        raise ValueError(f"{str(folder)!r} holds a {name} (model_index.json); only Wan 2.1 text-to-video "
                         "folders (WanPipeline) are supported")
    if (index.get("transformer_2") or [None])[0] is not None or index.get("boundary_ratio") is not None:
        raise ValueError(f"{str(folder)!r} is a two-expert Wan 2.2 pipeline; only Wan 2.1 (one transformer) "
                         "is supported")


def read_diffusers_pipeline(folder: Path) -> dict:
    """Generation settings of a diffusers Wan folder: {"shift": flow shift from scheduler/scheduler_config.json}."""
    sched = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    # UniPC/DPM schedulers name it flow_shift; FlowMatchEulerDiscreteScheduler names it shift.
    shift = sched.get("flow_shift", sched.get("shift", 1.0))
    return {"shift": float(shift)}


def read_model_folder(folder: str | Path | None) -> tuple[Path, PipelineConfig]:
    """Check a model folder (None: the embedded default) and read its generation defaults, without loading weights."""
    if folder is None:
        folder = DEFAULT_MODEL_DIR
        if not (folder / OUR_CONFIG).is_file():
            raise FileNotFoundError(
                f"the embedded default model is not installed (looked for {folder / OUR_CONFIG}); pass a model "
                "folder instead, e.g. VideoPipeline.from_pretrained('Wan2.1-T2V-1.3B-Diffusers') or --model DIR")
    folder, kind = find_model_folder(folder)
    if kind == "vidgen":
        return folder, from_dict(PipelineConfig, folder / OUR_CONFIG)
    return folder, PipelineConfig(shift=read_diffusers_pipeline(folder)["shift"])
