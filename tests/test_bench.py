"""scripts/bench.py's command line and table (the benchmark itself is run by hand: it takes minutes)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vidgen_lab.bench.common import Row
from vidgen_lab.bench.run import NOTES, _report, parse_args

ROOT = Path(__file__).resolve().parent.parent


def test_parts_are_checked():
    assert parse_args(["--only", "dit, vae"]).parts == ("dit", "vae")
    with pytest.raises(SystemExit):
        parse_args(["--only", "dit,speed"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_cuda_mode_fails_clearly_without_cuda():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench.py"), "--device", "cuda", "--only", "dit"],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert proc.returncode != 0
    assert "sees no CUDA device" in proc.stderr and "--device cpu" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_row_reports_ratios_ours_over_reference():
    row = Row("DiT forward", "fp32", ours_s=0.5, ref_s=1.0, diff=1e-6, ours_mib=30, ref_mib=60, flops=1e9,
              matmul_flops_per_s=4e9)
    cells = [c.strip() for c in row.markdown().strip("|").split("|")]
    assert cells[:7] == ["DiT forward", "fp32", "500", "1000", "**0.50**", "30 / 60", "**0.50**"]
    assert cells[7:10] == ["2.0", "4.0", "50%"]


def test_subset_writes_a_lean_section_and_the_full_run_keeps_its_notes():
    row = Row("DiT forward", "fp32", ours_s=0.5, ref_s=1.0, diff=1e-6)
    lean = _report(parse_args(["--only", "dit"]), [row], [], 60.0)
    lines = lean.splitlines()
    assert lines[0] == "## `scripts/bench.py --only dit`" and "DiT cases" in lines[2] and "VAE:" not in lines[2]
    assert lines[4].startswith("| work |") and lines[-1] == row.markdown()  # header, then just the table
    assert NOTES not in lean and "Same configs" not in lean
    assert "VAE:" in _report(parse_args(["--only", "vae"]), [row], [], 60.0).splitlines()[2]
    only_stream = _report(parse_args(["--only", "stream"]), [], ["stream table"], 60.0)
    assert "| work |" not in only_stream and only_stream.endswith("stream table")
    full = _report(parse_args([]), [row], ["stream table"], 60.0)
    assert "Same configs" in full and full.endswith(NOTES)
    assert "stream table" in full and row.markdown() in full


@pytest.mark.parametrize("has_units", [True, False])
def test_machine_line_says_whether_the_cpu_has_bf16_units(monkeypatch, has_units):
    # The notes' bf16 findings hold on a CPU without bf16 matmul units only: the table says which kind it ran on.
    import vidgen_lab.bench.run as run

    monkeypatch.setattr(run, "cpu_has_half_matmul", lambda: has_units)
    line = _report(parse_args(["--only", "dit"]), [], [], 60.0).splitlines()[2]
    assert f"bf16 matmul units: {'yes' if has_units else 'no'}; device cpu" in line
