"""Guidance/sequence-parallel generation and the many-prompt CLI under torchrun with 2 gloo ranks."""

import os
import subprocess
import sys

import numpy as np
import pytest

from tests.distributed import ROOT, torchrun
from vidgen.parallel import ParallelContext
from vidgen.parallel.generate import my_prompts, output_name
from vidgen.text import read_prompts


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return torchrun("dist_pipe_worker.py", tmp_path_factory.mktemp("pipe") / "out.json")


@pytest.mark.distributed
@pytest.mark.parametrize("case", ["cfg_parallel", "sequence_parallel", "sequence_parallel_tiled_decode"])
def test_parallel_generation_equals_single_process(results, case):
    for rank, per_rank in enumerate(results):
        assert per_rank[case] < 1e-5, (rank, case, per_rank[case])


def test_names_are_unique_and_prompts_split_without_overlap(tmp_path):
    prompts = ["a red circle", "a red circle", "A red  circle!", ""]
    names = [output_name(i, p) for i, p in enumerate(prompts)]
    assert len(set(names)) == len(names) and names[0] == "00000-a-red-circle.mp4" and names[3] == "00003-prompt.mp4"
    shares = [my_prompts(prompts, ParallelContext(dp_rank=r, dp_size=3)) for r in range(3)]
    assert sorted(i for share in shares for i, _ in share) == list(range(len(prompts)))
    f = tmp_path / "p.txt"
    f.write_text("# comment\none\n\n two \n")
    assert read_prompts(f) == ["one", "two"]


@pytest.mark.distributed
def test_cli_data_parallel_writes_each_prompt_once_and_never_overwrites(tmp_path, capsys):
    from tests.tiny_pipeline import tiny_vidgen_pipeline
    from vidgen.video_io import read_video, to_uint8

    pipe = tiny_vidgen_pipeline()
    pipe.save_pretrained(tmp_path / "model")
    prompts = ["a red circle moves left", "a blue square moves up", "a green triangle"]
    (tmp_path / "prompts.txt").write_text("\n".join(prompts) + "\n")
    out = tmp_path / "clips"
    args = ["generate", "--prompts", str(tmp_path / "prompts.txt"), "-o", str(out), "--model", str(tmp_path / "model"),
            "--frames", "1", "--format", ".png", "--seed", "5", "--no-progress"]
    cmd = [sys.executable, "-m", "vidgen", *args, "--nproc", "2"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == [output_name(i, p, ".png") for i, p in enumerate(prompts)]
    frame, _ = read_video(out / output_name(2, prompts[2], ".png"))
    want = to_uint8(pipe(prompts[2], num_frames=1, seed=5 + 2, progress=False).frames[0])
    np.testing.assert_array_equal(frame.reshape(want.shape), want)
    from vidgen.cli import main

    assert main(args) == 2  # one process, the same names: refused before any work
    assert "already exists" in capsys.readouterr().err


def test_parallel_context_without_torch_distributed():
    assert ParallelContext.from_world() == ParallelContext.single()
    assert ParallelContext.single().sample_size == 1
    with pytest.raises(RuntimeError, match="torchrun"):
        ParallelContext.from_world(sp_size=2)
