"""scripts/gpu_check.py: its dry run on CPU reports every part with a status and numbers; a failing measurement is
recorded, not fatal; `make gpu-check` needs no venv."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vidgen_lab import gpu_check, gpu_check_measure, gpu_check_parts
from vidgen_lab.gpu_check import markdown

ROOT = Path(__file__).resolve().parents[1]


def _number(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


@pytest.mark.slow
def test_dry_run_reports_every_part_with_numbers(tmp_path):
    out = tmp_path / "x.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--dry-run", "--no-write",
                           "--out", str(out)], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["dry_run"] is True and report["torch"] == torch.__version__ and "name" in report
    assert set(report["parts"]) == set(gpu_check.PART_FNS)
    for name, part in report["parts"].items():
        assert part["status"] in ("ok", "partial"), (name, part)
        assert _number(part["seconds"]) and part["seconds"] <= part["budget_s"] + 60
    p = {name: part["results"] for name, part in report["parts"].items()}

    tests = p["cuda_tests_and_parity"]
    assert tests["cuda_tests"]["counts"].get("skipped", 0) + tests["cuda_tests"]["counts"].get("passed", 0) >= 1
    for key in ("dit_parity_fp32", "dit_parity_bf16", "vae_parity_fp32"):
        assert tests[key]["status"] == "ok" and tests[key]["rel_diff"] <= tests[key]["bound"]

    wan = p["wan_1_3b"]
    assert wan["attention_backend"]["auto_picks"] == "sdpa"  # on CPU
    assert wan["flops"]["per_forward"] > 0 and wan["flops"]["scaling_py"] > 0 and wan["matmul"]["tflops"] > 0
    for work in ("forward", "guided_step"):
        for impl in ("ours", "diffusers"):
            m = wan[work][impl]
            assert _number(m["seconds"]) and m["seconds"] > 0
            assert m["peak_mib"] is None  # not measured on CPU
        assert _number(wan[work]["rel_diff"]) and _number(wan[work]["time_ratio"])
    assert _number(wan["forward"]["ours"]["tflops"])

    vae = p["vae_decode"]
    for key in ("ours_stream_decode", "diffusers_decode", "diffusers_tiled_decode"):
        assert vae[key]["status"] == "ok" and vae[key]["seconds"] > 0

    block = p["wan_14b_block"]["block_forward"]
    assert block["seconds"] > 0 and block["extrapolated_s"] == pytest.approx(block["seconds"] * 50 * 2 * 2)
    assert block["wan_published_s"] == 1838.0

    modes = p["memory_modes"]
    for mode in gpu_check_parts.MEMORY_MODES:
        assert modes[mode]["status"] in ("ok", "not available"), (mode, modes[mode])
        if modes[mode]["status"] == "ok":
            assert modes[mode]["seconds"] > 0 and _number(modes[mode]["first_call_s"])
    assert "## GPU check" in proc.stdout and "| memory_modes |" in proc.stdout


def test_a_failing_measurement_is_recorded_and_the_next_one_runs():
    r = gpu_check_measure.Results(gpu_check_measure.Budget(60))
    r.run("broken", lambda: 1 / 0)
    r.run("missing", lambda: __import__("vidgen.no_such_module"))
    r.run("late", lambda: {}, needs=1e6)
    r.run("fine", lambda: {"seconds": 1.0})
    assert r["broken"] == {"status": "error", "error": "ZeroDivisionError: division by zero"}
    assert r["missing"]["status"] == "not available" and r["late"]["status"] == "over budget"
    assert r["fine"] == {"status": "ok", "seconds": 1.0}
    assert gpu_check.part_status(r) == "error"
    assert gpu_check.part_status({"setup": {}, "a": {"status": "ok"}, "b": {"status": "over budget"}}) == "partial"
    assert gpu_check.part_status({"a": {"status": "mismatch"}}) == "failed"


def test_a_part_that_raises_is_recorded(monkeypatch):
    def boom(sizes, device, budget):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setitem(gpu_check.PART_FNS, "wan_14b_block", boom)
    entry = gpu_check.run_part("wan_14b_block", gpu_check.DRY, torch.device("cpu"), end=float("inf"))
    assert entry["status"] == "error" and entry["error"] == "RuntimeError: CUDA out of memory"
    none_left = gpu_check.run_part("wan_14b_block", gpu_check.DRY, torch.device("cpu"), end=0.0)
    assert none_left["status"] == "over budget"


def test_report_of_failed_parts_still_renders():
    report = {"name": "GPU", "torch": "2", "cuda": "13", "seconds": 5.0, "budget_s": 360.0, "parts": {
        "wan_1_3b": {"status": "error", "error": "RuntimeError: boom", "seconds": 1.0, "budget_s": 80.0},
        "memory_modes": {"status": "partial", "seconds": 2.0, "budget_s": 120.0,
                         "results": {"none": {"status": "ok", "seconds": 0.5}, "fp8": {"status": "not available"}}},
    }}
    text = markdown(report)
    assert "| wan_1_3b | error | 1 (80) | RuntimeError: boom |" in text
    assert "| fp8 | not available | – |" in text and "| none | ok | 500 |" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_without_cuda_it_says_to_use_dry_run(capsys):
    with pytest.raises(SystemExit):
        gpu_check.parse_args([])
    assert "sees no CUDA device" in capsys.readouterr().err


def test_unknown_part_is_refused(capsys):
    with pytest.raises(SystemExit):
        gpu_check.parse_args(["--dry-run", "--only", "wan_1_3b,speed"])
    assert "speed" in capsys.readouterr().err
    assert gpu_check.parse_args(["--dry-run", "--only", "vae_decode"]).parts == ("vae_decode",)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_target_needs_no_venv(tmp_path):
    # also run from inside `make test`: the outer make's variables must not reach this one
    outer = ("PYTHON", "GPU_CHECK_ARGS", "VENV", "MAKEFLAGS", "MAKELEVEL", "MFLAGS")
    env = {k: v for k, v in os.environ.items() if k not in outer}

    def commands(*variables):
        return subprocess.run(["make", "--no-print-directory", "-n", "gpu-check", *variables], cwd=ROOT,
                              capture_output=True, text=True, check=True, env=env).stdout.strip()

    assert commands(f"VENV={tmp_path / 'none'}") == "python3 scripts/gpu_check.py"
    assert commands("PYTHON=python3.12", "GPU_CHECK_ARGS=--dry-run") == "python3.12 scripts/gpu_check.py --dry-run"
