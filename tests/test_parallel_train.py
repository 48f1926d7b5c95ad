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


def test_scaling_doc_tables_are_the_calculators_and_match_the_model():
    """docs/scaling.md holds exactly what the calculator gives for 14B, and the calculator's token and parameter counts
    are the DiT's own (checked on the tiny preset by running it)."""
    from pathlib import Path

    import torch

    from causal_vae.config import VAEConfig
    from vidgen.dit.config import DiTConfig
    from vidgen.dit.model import DiT
    from vidgen.parallel.scaling import count_params, latent_grid, markdown_table, rank_costs

    doc = (Path(__file__).resolve().parents[1] / "docs" / "scaling.md").read_text()
    config, vae = DiTConfig.preset("wan2.1-t2v-14b"), VAEConfig()
    params = count_params(config)
    for frames, height, width in ((81, 480, 832), (81, 720, 1280)):
        grid = latent_grid(frames, height, width, vae.temporal_compression, vae.spatial_compression)
        assert markdown_table([rank_costs(config, grid, r, params=params) for r in (1, 2, 4, 8)]) in doc
    tiny = DiTConfig.preset("tiny")
    dit = DiT(tiny)
    assert count_params(tiny) == sum(p.numel() for p in dit.parameters())
    grid = latent_grid(9, 48, 32)  # (3, 6, 4)
    assert dit.embed_patches(torch.zeros(1, 4, *grid)).shape[1] == rank_costs(tiny, grid, 1).tokens == 18
    assert rank_costs(tiny, grid, 4).tokens_per_rank == 5
