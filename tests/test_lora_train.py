"""LoRA adapters on the DiT: injected with peft on a frozen base, exported in the diffusers layout (fused projections
split exactly), and loaded by diffusers' own `WanTransformer3DModel.load_lora_adapter` to the same outputs."""

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from tests.tiny_pipeline import tiny_diffusers_transformer
from vidgen.dit.config import DiTConfig
from vidgen.dit.model import DiT
from vidgen.lora.adapters import LoraAdapters
from vidgen.lora.export import export_lora, to_diffusers
from vidgen.lora.train import adapter_deltas, adapter_state, inject_lora, load_adapter_state
from vidgen.train.config import LORA_TARGETS, LoRAConfig


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def _inputs(c, b=2, f=3, h=4, w=6, seq=7):
    g = torch.Generator().manual_seed(1)
    return (torch.randn(b, c.in_dim, f, h, w, generator=g), torch.tensor([999.0, 137.25]),
            torch.randn(b, seq, c.text_dim, generator=g))


def _randomise_adapters(dit, scale=0.2):
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in dit.named_parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g) * scale)


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    return DiT(DiTConfig.preset("tiny")).eval()


def test_fresh_adapters_change_nothing_and_only_they_train(tiny):
    x, t, ctx = _inputs(tiny.config)
    with torch.no_grad():
        before = tiny(x, t, ctx)
    inject_lora(tiny, LoRAConfig(rank=4, alpha=8.0))
    with torch.no_grad():
        assert torch.equal(tiny(x, t, ctx), before)  # B starts at zero
    trainable = {n for n, p in tiny.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    # one A and one B on each default target of each block
    assert len(trainable) == 2 * len(LORA_TARGETS) * tiny.config.num_layers
    assert set(adapter_state(tiny.state_dict())) == trainable


def test_unknown_target_is_a_clear_error(tiny):
    with pytest.raises(ValueError, match="not linear layers of the DiT's blocks.*self_attn.qkv"):
        inject_lora(tiny, LoRAConfig(target_modules=("self_attn.to_q",)))


def test_adapter_state_round_trips_and_must_match(tiny):
    inject_lora(tiny, LoRAConfig(rank=2, target_modules=("cross_attn.kv",)))
    _randomise_adapters(tiny)
    state = adapter_state(tiny.state_dict())
    torch.manual_seed(0)
    other = inject_lora(DiT(DiTConfig.preset("tiny")), LoRAConfig(rank=2, target_modules=("cross_attn.kv",)))
    load_adapter_state(other, state)
    assert all(torch.equal(other.state_dict()[k], v) for k, v in state.items())
    with pytest.raises(ValueError, match="missing"):
        load_adapter_state(other, dict(list(state.items())[1:]))


def test_fused_projections_split_exactly():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 10, generator=g), torch.randn(30, 3, generator=g)
    a2, b2 = torch.randn(3, 10, generator=g), torch.randn(20, 3, generator=g)
    theirs = to_diffusers({"blocks.1.self_attn.qkv": (a, b), "blocks.1.cross_attn.kv": (a2, b2)})
    assert sorted(theirs) == sorted(f"transformer.blocks.1.{m}.lora_{x}.weight" for x in "AB" for m in (
        "attn1.to_q", "attn1.to_k", "attn1.to_v", "attn2.to_k", "attn2.to_v"))
    x = torch.randn(5, 10, generator=g)
    fused = x @ a.T @ b.T  # (5, 30)
    for i, m in enumerate(("to_q", "to_k", "to_v")):  # each split adapter computes exactly its third of the fused one
        part = x @ theirs[f"transformer.blocks.1.attn1.{m}.lora_A.weight"].T @ theirs[
            f"transformer.blocks.1.attn1.{m}.lora_B.weight"].T
        assert torch.equal(part, x @ a.T @ b[10 * i:10 * (i + 1)].T)
        assert torch.allclose(part, fused[:, 10 * i:10 * (i + 1)], rtol=0, atol=1e-5)


def test_exported_file_loads_back_to_the_same_outputs(tiny, tmp_path):
    base = {k: v.clone() for k, v in tiny.state_dict().items()}
    inject_lora(tiny, LoRAConfig(rank=4, alpha=12.0))
    _randomise_adapters(tiny)
    path = export_lora(tiny, tmp_path / "lora.safetensors", alpha=12.0)
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    peft_kwargs = json.loads(meta["lora_adapter_metadata"])
    assert peft_kwargs["transformer.r"] == 4 and peft_kwargs["transformer.lora_alpha"] == 4  # scale 3 is in lora_B
    assert json.loads(meta["vidgen_lora"])["alpha"] == 12.0
    fresh = DiT(tiny.config).eval()
    fresh.load_state_dict(base)
    LoraAdapters(fresh).load(path)  # the pipeline's loader: the split projections fuse back exactly
    x, t, ctx = _inputs(tiny.config)
    with torch.no_grad():
        assert _rel(fresh(x, t, ctx), tiny(x, t, ctx)) < 1e-6


def test_diffusers_loads_our_file_to_our_outputs(tmp_path):
    """WanTransformer3DModel with the same tiny random weights, our adapters loaded by `load_lora_adapter`."""
    diffusers = pytest.importorskip("diffusers")
    oracle = tiny_diffusers_transformer()
    oracle.save_pretrained(tmp_path / "wan")
    ours = DiT.from_pretrained(tmp_path / "wan").eval()
    x, t, ctx = _inputs(ours.config, seq=7)
    with torch.no_grad():
        base = ours(x, t, ctx)
        assert _rel(base, oracle(x, t, ctx, return_dict=False)[0]) < 2e-6
    inject_lora(ours, LoRAConfig(rank=4, alpha=8.0))
    _randomise_adapters(ours)
    path = export_lora(ours, tmp_path / "lora.safetensors", alpha=8.0)
    oracle.load_lora_adapter(str(path), adapter_name="ours")
    with torch.no_grad():
        adapted = ours(x, t, ctx)
        theirs = oracle(x, t, ctx, return_dict=False)[0]
    assert _rel(adapted, base) > 1e-2  # the adapters matter
    assert _rel(theirs, adapted) <= 1e-5, _rel(theirs, adapted)
    # every tensor in the file went into the model
    loaded = {k for k in oracle.state_dict() if ".lora_" in k}
    assert len(loaded) == len(load_file(str(path)))
    # the pipeline-level reader (WanPipeline.load_lora_weights reads through it) takes the file as it is, with alpha
    state, meta = diffusers.WanPipeline.lora_state_dict(str(path), return_lora_metadata=True)
    assert sorted(state) == sorted(load_file(str(path))) and meta["transformer.lora_alpha"] == meta["transformer.r"]
    assert len(adapter_deltas(ours)) == 2 * len(LORA_TARGETS)  # every default target of both blocks
