"""Sequence parallelism equals the single-process DiT (fp32), forward and gradients, under torchrun on 2 gloo ranks.
"""

import dataclasses

import pytest
import torch

from tests.distributed import torchrun
from vidgen.dit.config import DiTConfig
from vidgen.dit.model import DiT
from vidgen.dit.step_cache import StepCache, StepCacheConfig
from vidgen.parallel import ParallelContext
from vidgen.parallel.sequence import Shard, gathered_kv_attention, sequence_attention, ulysses_attention

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


def test_attention_method_is_refused_before_any_work():
    assert sequence_attention("auto", 4, 2) is ulysses_attention
    assert sequence_attention("auto", 3, 2) is gathered_kv_attention
    dit = DiT(dataclasses.replace(DiTConfig.preset("tiny"), num_heads=3))
    x, t, context = torch.randn(1, 4, 1, 2, 2), torch.tensor([500.0]), torch.randn(1, 3, 24)
    # No process group exists here: both are refused before the first exchange would need one.
    with pytest.raises(ValueError, match="Ulysses needs the 3 heads"):
        dit(x, t, context, parallel=ParallelContext(sp_size=2, sp_attention="ulysses"))
    with pytest.raises(NotImplementedError, match="step caching"):
        dit(x, t, context, parallel=ParallelContext(sp_size=2), step_cache=StepCache(StepCacheConfig(0.1)))
