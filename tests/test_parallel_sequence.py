"""Sequence parallelism equals the single-process DiT (fp32), forward and gradients, under torchrun on 2 gloo ranks.
"""

import pytest
import torch

from tests.distributed import torchrun
from vidgen.parallel.sequence import Shard

CASES = ["even_scalar_ulysses", "uneven_per_frame_ulysses", "uneven_per_frame_gather_kv", "odd_heads_auto",
         "one_token", "grads_ulysses", "grads_gather_kv", "padded_text_grads"]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return torchrun("dist_sp_worker.py", tmp_path_factory.mktemp("sp") / "out.json")


@pytest.mark.distributed
@pytest.mark.parametrize("case", CASES)
def test_sequence_parallel_equals_single_process(results, case):
    for rank, per_rank in enumerate(results):
        r = per_rank[case]
        assert r["forward"] < 1e-5, (rank, r)
        if "grad_params" in r:
            assert r["grad_params"] < 1e-5 * max(1.0, r["grad_params_scale"]), (rank, r)
            assert r["grad_x"] < 1e-5, (rank, r)


def test_shard_covers_sequence_and_groups():
    total, ranks = 27, 4
    shards = [Shard(total, ranks, r) for r in range(ranks)]
    x = torch.arange(total).float()[None, :, None]
    got = torch.cat([s.take(x) for s in shards], dim=1)[0, :total, 0]
    assert torch.equal(got, torch.arange(total).float())
    groups = (9, 9, 9)
    for s in shards:
        g0, g1, sizes = s.local_groups(groups)
        assert sum(sizes) == s.size and len(sizes) == g1 - g0
    assert shards[1].local_groups(groups) == (0, 2, (2, 5))  # tokens 7..13: 2 of group 0, 5 of group 1
    assert Shard(1, 2, 1).local_groups((1,)) == (0, 1, (1,))  # a rank holding only padding
