"""Checkpoints that survive interruption: safetensors for tensors, JSON for the rest, a manifest written last.

Layout: `<dir>/step-00001234/` holding `<name>.safetensors` files (model, ema, optimizer, ...), `state.json` (step, data
position, RNG states, optimizer hyper-parameters, the config) and `manifest.json` (size and sha256 of every other file).
A checkpoint is first written to a temporary folder and renamed into place, so a crash leaves either a complete
checkpoint or a `.tmp-*` folder that is ignored. One whose manifest is missing or does not match its files is corrupt:
`latest()` warns and falls back to the previous one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

log = logging.getLogger(__name__)

PREFIX = "step-"
MANIFEST = "manifest.json"
STATE = "state.json"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used (corrupt, or from another config)."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class CheckpointManager:
    def __init__(self, folder: str | Path, keep_last: int = 3):
        self.folder, self.keep_last = Path(folder), keep_last

    def save(self, step: int, tensors: dict[str, dict[str, torch.Tensor]], state: dict) -> Path:
        """Write `tensors[name]` to `<name>.safetensors` and `state` to state.json, atomically; prune old ones."""
        self.folder.mkdir(parents=True, exist_ok=True)
        final = self.folder / f"{PREFIX}{step:08d}"
        tmp = self.folder / f".tmp-{PREFIX}{step:08d}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for name, sd in tensors.items():
            plain = {k: v.detach().cpu().contiguous().clone() for k, v in sd.items()}  # no shared storage
            save_file(plain, str(tmp / f"{name}.safetensors"))
        (tmp / STATE).write_text(json.dumps(state, indent=1))
        manifest = {p.name: {"size": p.stat().st_size, "sha256": _sha256(p)} for p in sorted(tmp.iterdir())}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        _fsync_dir(tmp)
        if final.exists():  # a re-save of the same step (e.g. the final step after a resume): replace it
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(self.folder)
        self._prune()
        return final

    def checkpoints(self) -> list[Path]:
        """Complete-looking checkpoint folders, oldest first."""
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.iterdir() if p.is_dir() and p.name.startswith(PREFIX))

    def latest(self) -> Path | None:
        """The newest checkpoint that verifies; corrupt ones are reported and skipped."""
        for path in reversed(self.checkpoints()):
            problem = verify(path)
            if problem is None:
                return path
            log.warning("checkpoint %s is unusable (%s); trying the previous one", path, problem)
        return None

    def _prune(self) -> None:
        for path in self.checkpoints()[:-self.keep_last]:
            shutil.rmtree(path, ignore_errors=True)
        for tmp in self.folder.glob(f".tmp-{PREFIX}*"):  # leftovers of killed writers (never our own: it was renamed)
            shutil.rmtree(tmp, ignore_errors=True)


def verify(path: Path) -> str | None:
    """None if the checkpoint's files match its manifest, else what is wrong."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except FileNotFoundError:
        return "no manifest (the write did not finish)"
    except (json.JSONDecodeError, OSError) as e:
        return f"unreadable manifest ({e})"
    for name, meta in manifest.items():
        f = path / name
        if not f.is_file():
            return f"{name} is missing"
        if f.stat().st_size != meta["size"]:
            return f"{name} has {f.stat().st_size} bytes, manifest says {meta['size']}"
        if _sha256(f) != meta["sha256"]:
            return f"{name} does not match its sha256"
    if STATE not in manifest:
        return f"no {STATE}"
    return None


def load(path: Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict]:
    """The tensors (by file name) and state of a verified checkpoint."""
    problem = verify(path)
    if problem is not None:
        raise CheckpointError(f"checkpoint {path} is unusable: {problem}")
    tensors = {p.name[: -len(".safetensors")]: load_file(str(p)) for p in sorted(path.glob("*.safetensors"))}
    return tensors, json.loads((path / STATE).read_text())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --- optimizer state: tensors to safetensors, hyper-parameters to JSON -------------------------------------------


def optimizer_to_parts(state_dict: dict) -> tuple[dict[str, torch.Tensor], list[dict]]:
    tensors = {}
    for idx, per_param in state_dict["state"].items():
        for key, value in per_param.items():
            tensors[f"{idx}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    return tensors, state_dict["param_groups"]


def optimizer_from_parts(tensors: dict[str, torch.Tensor], param_groups: list[dict]) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": param_groups}


# --- RNG states as JSON ------------------------------------------------------------------------------------------


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode()


def _unb64(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8).clone()


def rng_state(generators: dict[str, torch.Generator]) -> dict:
    """Python, numpy, torch (CPU and CUDA) and named generator states, JSON-serialisable."""
    py = random.getstate()
    np_state = np.random.get_state()
    return {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": _b64(torch.get_rng_state()),
        "cuda": [_b64(s) for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
        "generators": {name: _b64(g.get_state()) for name, g in generators.items()},
    }


def set_rng_state(state: dict, generators: dict[str, torch.Generator]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(_unb64(state["torch"]))
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_unb64(s) for s in state["cuda"]])
    for name, g in generators.items():
        g.set_state(_unb64(state["generators"][name]))
