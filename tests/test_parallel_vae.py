"""Tile-parallel VAE decode over 2 gloo ranks equals the single-process tiled decode."""

import pytest

from tests.distributed import torchrun


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return torchrun("dist_vae_worker.py", tmp_path_factory.mktemp("vae") / "out.json")


@pytest.mark.distributed
@pytest.mark.parametrize("case", ["two_tiles", "eight_tiles", "one_tile", "stream"])
def test_parallel_decode_equals_single_process(results, case):
    for rank, per_rank in enumerate(results):
        assert per_rank[case]["shape_ok"], (rank, per_rank[case])
        assert per_rank[case]["max_diff"] < 1e-5, (rank, per_rank[case])
