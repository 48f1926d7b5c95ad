"""Loading and saving DiT weights: parity with diffusers' WanTransformer3DModel on the same (random) weights, our own
folder, the original Wan 2.1 layout, sharded checkpoints, and clear errors for broken ones."""

import copy
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.tiny_pipeline import tiny_diffusers_transformer
from vidgen.dit.checkpoint import export_state_dict, save_dit
from vidgen.dit.model import DiT

diffusers = pytest.importorskip("diffusers")

TOL = 1e-4  # relative, fp32


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.fixture(scope="module")
def oracle():
    """A tiny random diffusers model, weights perturbed so no gate, bias or table is trivially zero."""
    model = tiny_diffusers_transformer()
    return model


@pytest.fixture(scope="module")
def oracle_dir(oracle, tmp_path_factory):
    folder = tmp_path_factory.mktemp("diffusers_wan")
    oracle.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def dit(oracle_dir):
    return DiT.from_pretrained(oracle_dir)


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(1)
    # 3 latent frames, non-square 4x6 latent, 7 text tokens
    return torch.randn(2, 4, 3, 4, 6, generator=g), torch.randn(2, 7, 24, generator=g)


def test_diffusers_parity_scalar_timesteps(oracle, dit, inputs):
    x, ctx = inputs
    t = torch.tensor([999.0, 137.25])
    with torch.no_grad():
        assert _rel(dit(x, t, ctx), oracle(x, t, ctx, return_dict=False)[0]) < TOL


def test_diffusers_parity_per_frame_timesteps(oracle, dit, inputs):
    x, ctx = inputs
    t = torch.tensor([[0.0, 500.0, 999.0], [42.0, 42.0, 7.5]])
    per_token = t.repeat_interleave(2 * 3, dim=1)  # diffusers takes one timestep per token: (B, F*h'*w')
    equal = torch.tensor([[640.0] * 3, [3.0] * 3])
    with torch.no_grad():
        assert _rel(dit(x, t, ctx), oracle(x, per_token, ctx, return_dict=False)[0]) < TOL
        assert _rel(dit(x, equal, ctx), oracle(x, equal[:, 0], ctx, return_dict=False)[0]) < TOL


def test_sharded_and_pipeline_folders(oracle, dit, tmp_path, inputs):
    oracle.save_pretrained(tmp_path / "transformer", max_shard_size="20KB")
    assert (tmp_path / "transformer" / "diffusion_pytorch_model.safetensors.index.json").is_file()
    loaded = DiT.from_pretrained(tmp_path)  # a pipeline root resolves to its transformer/ subfolder
    for (name, a), b in zip(loaded.state_dict().items(), dit.state_dict().values()):
        assert torch.equal(a, b), name


def test_own_folder_round_trip(dit, tmp_path, inputs):
    x, ctx = inputs
    dit.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["_class_name"] == "vidgen.DiT"
    loaded = DiT.from_pretrained(tmp_path)
    assert loaded.config == dit.config
    assert all(not p.is_meta for p in loaded.parameters())
    t = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    with torch.no_grad():
        assert torch.equal(loaded(x, t, ctx), dit(x, t, ctx))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        dit.save_pretrained(tmp_path)


def test_original_wan_layout(oracle, dit, tmp_path, inputs):
    x, ctx = inputs
    save_dit(dit, tmp_path, fmt="wan")
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["dim"] == 48 and config["num_heads"] == 4 and config["model_type"] == "t2v"
    keys = set(load_file(tmp_path / "diffusion_pytorch_model.safetensors"))
    for key in ("blocks.1.self_attn.q.weight", "blocks.0.norm3.bias", "blocks.0.ffn.2.weight", "head.head.weight",
                "head.modulation", "time_projection.1.weight", "text_embedding.2.bias", "blocks.1.modulation"):
        assert key in keys
    t = torch.tensor([500.0, 20.0])
    with torch.no_grad():
        assert torch.equal(DiT.from_pretrained(tmp_path)(x, t, ctx), dit(x, t, ctx))
    # Independent check of the table: diffusers' own Wan -> diffusers key conversion gives back the oracle's weights.
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    converted = convert_wan_transformer_to_diffusers(load_file(tmp_path / "diffusion_pytorch_model.safetensors"))
    expected = oracle.state_dict()
    assert set(converted) == set(expected)
    for key, value in converted.items():
        assert torch.equal(value, expected[key]), key


def test_keeps_checkpoint_dtype_or_casts(dit, tmp_path):
    save_dit(copy.deepcopy(dit).to(torch.bfloat16), tmp_path)
    assert DiT.from_pretrained(tmp_path).patch_embedding.weight.dtype == torch.bfloat16
    assert DiT.from_pretrained(tmp_path, dtype=torch.float32).head.modulation.dtype == torch.float32


def _broken_copy(oracle_dir, tmp_path, edit):
    (tmp_path / "config.json").write_text((oracle_dir / "config.json").read_text())
    state = load_file(oracle_dir / "diffusion_pytorch_model.safetensors")
    edit(state)
    save_file(state, tmp_path / "diffusion_pytorch_model.safetensors")
    return tmp_path


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda s: s.pop("blocks.1.attn1.to_k.weight"), r"missing keys: blocks\.1\.self_attn\.qkv\.weight"),
        (lambda s: s.update(extra=torch.zeros(1)), r"unexpected keys.*extra"),
        (lambda s: s.update({"proj_out.bias": torch.zeros(3)}), r"shape mismatches: head\.proj\.bias.*\(3,\)"),
    ],
)
def test_broken_checkpoints_name_the_problem(oracle_dir, tmp_path, edit, match):
    with pytest.raises(ValueError, match=match):
        DiT.from_pretrained(_broken_copy(oracle_dir, tmp_path, edit))


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        DiT.from_pretrained(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        DiT.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"dim": 48, "num_heads": 4, "ffn_dim": 96, "num_layers": 1}))
    with pytest.raises(FileNotFoundError, match="no \\*.safetensors"):
        DiT.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError, match="not a vidgen DiT"):
        DiT.from_pretrained(tmp_path)


def test_foreign_export_splits_fused_projections(dit):
    state = export_state_dict(dit, "diffusers")
    qkv = dit.blocks[0].self_attn.qkv.weight
    assert torch.equal(torch.cat([state[f"blocks.0.attn1.to_{n}.weight"] for n in "qkv"]), qkv)
