"""Training on 2 gloo ranks (accelerate DDP, torch FSDP2, sequence parallelism) ends at the single-process weights."""

import pytest

from tests.distributed import torchrun


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return torchrun("dist_train_worker.py", tmp_path_factory.mktemp("train") / "out.json")


@pytest.mark.distributed
@pytest.mark.parametrize("case", ["accelerate_ddp", "fsdp2", "sequence_parallel"])
def test_distributed_training_matches_single_process(results, case):
    for rank, per_rank in enumerate(results):
        assert per_rank["moved"] > 1e-3, per_rank
        assert per_rank[case] < 1e-5, (rank, case, per_rank)


def test_accelerate_configs_load_and_wrap_a_real_block_class():
    from pathlib import Path

    from accelerate.commands.config.config_args import load_config_from_file

    import vidgen.dit.model as dit_model

    folder = Path(__file__).resolve().parents[1] / "configs" / "accelerate"
    fsdp = sorted(folder.glob("fsdp-*.yaml"))
    assert {p.stem for p in fsdp} >= {"fsdp-wan2.1-t2v-14b", "fsdp-wan2.1-t2v-1.3b"}
    for path in fsdp:
        config = load_config_from_file(str(path))
        assert config.distributed_type == "FSDP" and config.fsdp_config["fsdp_version"] == 2
        assert hasattr(dit_model, config.fsdp_config["fsdp_transformer_layer_cls_to_wrap"])
