"""The Makefile's set-up: torch comes from PyPI's default unless TORCH_INDEX names another index (dry runs only)."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def _setup_commands(tmp_path, *variables: str) -> list[str]:
    """The commands `make setup` would run to build a fresh venv in tmp_path (printed, not run)."""
    run = subprocess.run(["make", "-n", "-B", f"VENV={tmp_path / 'venv'}", "setup", *variables], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    return run.stdout.splitlines()


def _torch_install(lines: list[str]) -> str:
    (line,) = [ln for ln in lines if "pip install" in ln and "torch==" in ln]
    return line


def test_default_installs_pinned_torch_from_pip_configuration(tmp_path):
    line = _torch_install(_setup_commands(tmp_path))
    assert line.endswith("-m pip install -q torch==2.13.0")
    assert "--index-url" not in line


def test_torch_index_and_version_are_passed_to_pip(tmp_path):
    lines = _setup_commands(tmp_path, "TORCH_INDEX=https://download.pytorch.org/whl/cpu", "TORCH_VERSION=2.12.1")
    assert _torch_install(lines).endswith("-m pip install -q --index-url https://download.pytorch.org/whl/cpu "
                                          "torch==2.12.1")
    # torch comes before vidgen, so vidgen's own `torch` requirement is already met by the chosen build
    assert lines.index(_torch_install(lines)) < next(i for i, ln in enumerate(lines) if "-e '.[" in ln)
