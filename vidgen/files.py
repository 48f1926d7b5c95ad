"""Atomic writes: a file or a folder appears complete under its final name, or not at all."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` for a hidden name beside `path`, then rename tmp onto `path` (replacing it); on any failure
    the temporary file is removed and `path` is left as it was. Returns `path`."""
    path = Path(path)
    # Same folder, so the rename is atomic; hidden, so a half-written file is never mistaken for a result.
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


@contextmanager
def atomic_folder(folder: str | Path) -> Iterator[Path]:
    """Yield a new hidden folder beside `folder` to fill; when the block ends without error it replaces `folder`
    (see `replace_folder`), on an error it is removed and `folder` is left as it was."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)  # a leftover of a killed writer with our process id
    tmp.mkdir()
    try:
        yield tmp
        replace_folder(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def replace_folder(tmp: str | Path, folder: str | Path) -> Path:
    """Move the finished folder `tmp` onto `folder`; an existing `folder` is first moved aside and deleted only after,
    so a failure never leaves a half folder (or none) under the final name. Returns `folder`."""
    tmp, folder = Path(tmp), Path(folder)
    if not folder.exists():
        os.replace(tmp, folder)
        return folder
    old = folder.with_name(f".{folder.name}.old{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old)
    return folder
