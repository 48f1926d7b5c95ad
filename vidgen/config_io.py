"""Frozen-dataclass configs <-> YAML/JSON/dicts, with errors that name unknown or missing keys.

Every model and the trainer keep their config as a frozen dataclass; this module is the one place that maps files onto
them. Nested dataclass fields are built recursively; tuples are restored from YAML lists.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml

from vidgen.files import write_atomic

T = TypeVar("T")


def read_mapping(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """A dict from a mapping, or from a .yaml/.yml/.json file."""
    if isinstance(source, Mapping):
        return dict(source)
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    text = path.read_text()
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of config keys at the top level, got {type(data).__name__}")
    return data


def from_dict(cls: type[T], source: str | Path | Mapping[str, Any], *, where: str | None = None) -> T:
    """Build dataclass `cls` from a mapping or file. Unknown keys are an error that names them and the known ones."""
    data = read_mapping(source)
    where = where or (str(source) if not isinstance(source, Mapping) else cls.__name__)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown} for {cls.__name__}; known keys are {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {name: _coerce(hints.get(name), value, f"{where}.{name}") for name, value in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:  # e.g. a required field is missing
        raise ValueError(f"{where}: cannot build {cls.__name__}: {e}") from None


def _coerce(hint: Any, value: Any, where: str) -> Any:
    if hint is None:
        return value
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
        return from_dict(hint, value, where=where)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None:
            return None
        for arg in args:
            if arg is not type(None):
                return _coerce(arg, value, where)
    if origin is tuple and isinstance(value, (list, tuple)):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, where) for v in value)
        return tuple(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def to_dict(config: Any) -> dict[str, Any]:
    """A plain dict (tuples as lists) suitable for YAML/JSON."""

    def plain(v):
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    return plain(config)


def save(config: Any, path: str | Path) -> None:
    """Write a config as JSON (.json) or YAML (anything else), atomically."""
    path = Path(path)
    data = to_dict(config)
    text = json.dumps(data, indent=2) + "\n" if path.suffix == ".json" else yaml.safe_dump(data, sort_keys=False)
    write_atomic(path, lambda tmp: tmp.write_text(text))
