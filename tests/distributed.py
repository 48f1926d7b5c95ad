"""Launch a worker script under torchrun with gloo on 127.0.0.1 and read back what rank 0 wrote."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(script: str, out: Path, *args: str, nproc: int = 2, timeout: float = 120.0) -> dict:
    """Run `tests/<script>` on `nproc` CPU processes; the worker writes JSON to `out` (its first argument)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_addr",
           "127.0.0.1", "--master_port", str(free_port()), str(ROOT / "tests" / script), str(out), *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"torchrun {script} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return json.loads(Path(out).read_text())


def report_and_exit(results: dict) -> None:
    """Worker side: gather every rank's `results` onto rank 0, which writes them as JSON to the path `torchrun` gave
    (sys.argv[1]), then leave the process group and exit the process (so call it last)."""
    import torch.distributed as dist

    everyone = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, results)
    if dist.get_rank() == 0:
        Path(sys.argv[1]).write_text(json.dumps(everyone))
    dist.barrier()
    dist.destroy_process_group()
    # Leave without interpreter finalization: with gloo (torch 2.13, CPU), tearing the interpreter down after the
    # groups are destroyed still aborts now and then ("terminate called without an active exception", SIGABRT in no
    # Python frame; 3 of 40 runs of the training worker), which torchrun reports as a failed rank. Everything the test
    # checks is on disk by now, and any real failure above raised before getting here.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
