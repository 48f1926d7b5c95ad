"""What a model folder is: our saved pipeline, or a diffusers-format Wan folder (`WanPipeline` or
`WanImageToVideoPipeline`: Wan 2.1 T2V/I2V/FLF2V, Wan 2.2 TI2V-5B and A14B). Checked cheaply, file by file, so a
wrong folder fails with the name of the missing file before any weights are read.

A Hugging Face repository id ("Wan-AI/Wan2.1-T2V-1.3B-Diffusers") that is not a local path resolves to its snapshot in
huggingface_hub's cache, downloaded there when missing and the hub can be reached: the configuration files alone
for checks, everything when the weights are loaded.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from causal_vae.io import read_json
from vidgen.config_io import from_dict
from vidgen.dit.checkpoint import read_config
from vidgen.model_kind import ModelKind, detect_kind
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
# Components a folder may have (a second expert; the CLIP image encoder of Wan 2.1 I2V / FLF2V): required when the
# diffusers index lists them, or, in our folders, when their folder is there.
OPTIONAL_FILES = {
    "transformer_2": ("config.json",),
    "image_encoder": ("config.json",),
    "image_processor": ("preprocessor_config.json",),
}
PIPELINE_CLASSES = ("WanPipeline", "WanImageToVideoPipeline")


def find_model_folder(folder: str | Path) -> tuple[Path, str]:
    """(folder, "vidgen" | "diffusers"); FileNotFoundError naming the first missing file otherwise."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder {str(folder)!r} does not exist (or is not a folder)")
    index = None  # a diffusers folder's model_index.json, read once
    if (folder / OUR_CONFIG).is_file():
        kind = "vidgen"
    elif (folder / DIFFUSERS_INDEX).is_file():
        kind = "diffusers"
        index = diffusers_index(folder)
        _check_diffusers_index(folder, index)
    else:
        raise FileNotFoundError(f"{str(folder)!r} is not a model folder: it has neither {OUR_CONFIG} (a vidgen "
                                f"pipeline) nor {DIFFUSERS_INDEX} (a diffusers Wan pipeline)")
    required = dict(_COMPONENT_FILES)
    required.update({sub: files for sub, files in OPTIONAL_FILES.items() if _has_component(folder, index, sub)})
    if kind == "diffusers":
        required["scheduler"] = ("scheduler_config.json",)
    for sub, files in required.items():
        for name in files:
            if not (folder / sub / name).is_file():
                raise FileNotFoundError(f"{str(folder)!r} is not a complete model folder: {sub}/{name} is missing")
    return folder, kind


def _has_component(folder: Path, index: dict | None, sub: str) -> bool:
    """Whether the folder has component `sub`: listed in a diffusers `index`, or (ours: no index) its folder is there."""
    if index is None:
        return (folder / sub).is_dir()
    return (index.get(sub) or [None])[0] is not None


def diffusers_index(folder: Path) -> dict:
    return json.loads((folder / DIFFUSERS_INDEX).read_text())


def _check_diffusers_index(folder: Path, index: dict) -> None:
    name = index.get("_class_name")
    if name not in PIPELINE_CLASSES:
        raise ValueError(f"{str(folder)!r} holds a {name} (model_index.json); supported are the Wan folders of "
                         f"{' and '.join(PIPELINE_CLASSES)}")


# diffusers scheduler class -> our sampler of the same method (the σ grid is always Wan's: docs/design.md)
SCHEDULER_SAMPLERS = {
    "UniPCMultistepScheduler": "unipc",
    "FlowMatchEulerDiscreteScheduler": "euler",
    "DPMSolverMultistepScheduler": "dpm++2m",
}


# Schedulers that feed the DiT whole timesteps ⌊1000·σ⌋ (flow.to_timestep)
INTEGER_TIMESTEP_SCHEDULERS = ("UniPCMultistepScheduler", "DPMSolverMultistepScheduler")


def read_diffusers_pipeline(folder: Path) -> dict:
    """Generation settings of a diffusers Wan folder from scheduler/scheduler_config.json: {"shift": its flow shift,
    "sampler": our sampler of its scheduler's method (Euler for one we do not know), "integer_timesteps"}; and from
    model_index.json, when it has them, "clean_frames" (expand_timesteps: TI2V) and "boundary_ratio" (two experts)."""
    sched = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    # UniPC/DPM schedulers name it flow_shift; FlowMatchEulerDiscreteScheduler names it shift.
    shift = sched.get("flow_shift", sched.get("shift", 1.0))
    name = sched.get("_class_name")
    out = {"shift": float(shift), "sampler": SCHEDULER_SAMPLERS.get(name, "euler"),
           "integer_timesteps": name in INTEGER_TIMESTEP_SCHEDULERS}
    if (folder / DIFFUSERS_INDEX).is_file():
        index = diffusers_index(folder)
        out["clean_frames"] = bool(index.get("expand_timesteps", False))
        if index.get("boundary_ratio") is not None:
            out["boundary_ratio"] = float(index["boundary_ratio"])
        if out["clean_frames"]:  # Wan 2.2 TI2V-5B: its own clip, 121 frames of 1280x704 at 24 fps
            out.update(TI2V_DEFAULTS)
    return out


TI2V_DEFAULTS = {"num_frames": 121, "height": 704, "width": 1280, "fps": 24}


HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # owner/name
CONFIG_PATTERNS = ("*.json", "*/*.json", "*/*.txt", "*/*.model")  # what the checks read: configs and tokenizer files


def hub_snapshot(repo_id: str, weights: bool) -> Path:
    """The cached snapshot folder of a Hugging Face repository (its config files alone unless `weights`), fetched
    into the cache when missing; FileNotFoundError saying where it was looked for and how to get it otherwise."""
    from huggingface_hub import constants, snapshot_download

    patterns = None if weights else list(CONFIG_PATTERNS)
    reason = None
    for local_only in (False, True):  # the hub first (it fills in missing files), then whatever the cache holds
        try:
            return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=local_only))
        except Exception as e:  # noqa: BLE001 - offline, unknown repository, no access: all end in one message
            reason = reason or f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    local = repo_id.split("/")[-1]
    raise FileNotFoundError(f"model {repo_id!r} is not a folder here, nor a Hugging Face repository in the cache "
                            f"({constants.HF_HUB_CACHE}), and it could not be downloaded ({reason}); download it "
                            f"with `huggingface-cli download {repo_id} --local-dir {local}` and pass that folder")


def locate(folder: str | Path, weights: bool = False) -> Path:
    """The local folder `folder` names: a path, or a repository id resolved through the Hugging Face cache."""
    if isinstance(folder, str) and not Path(folder).exists() and HUB_ID.match(folder):
        return hub_snapshot(folder, weights)
    return Path(folder)


def read_model_folder(folder: str | Path | None, weights: bool = False) -> tuple[Path, PipelineConfig]:
    """Check a model folder (None: the embedded default; a repository id: its cached snapshot, with the weights when
    `weights`) and read its generation defaults, without loading weights."""
    if folder is not None:
        folder = locate(folder, weights)
    if folder is None:
        folder = DEFAULT_MODEL_DIR
        if not (folder / OUR_CONFIG).is_file():
            raise FileNotFoundError(
                f"the embedded default model is not installed (looked for {folder / OUR_CONFIG}); pass a model "
                "folder instead, e.g. VideoPipeline.from_pretrained('Wan2.1-T2V-1.3B-Diffusers') or --model DIR")
    folder, kind = find_model_folder(folder)
    if kind == "vidgen":
        return folder, from_dict(PipelineConfig, folder / OUR_CONFIG)
    return folder, PipelineConfig(**read_diffusers_pipeline(folder))


def folder_kind(folder: Path, config: PipelineConfig) -> ModelKind:
    """The kind of a checked model folder (`read_model_folder`) from its config files alone, before any weight."""
    _, dit_config = read_config(folder / "transformer")
    vae_patch = read_json(folder / "vae" / "config.json").get("patch_size") or 1  # diffusers' and ours: same key
    return detect_kind(dit_config, config, (folder / "transformer_2").is_dir(), vae_patch)
