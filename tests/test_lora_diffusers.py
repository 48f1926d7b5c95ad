"""LoRA parity with diffusers: the same random LoRA files loaded into a tiny `WanTransformer3DModel` (diffusers,
through `WanPipeline.load_lora_weights`, which converts the Wan and musubi/kohya layouts itself) and into our DiT
loaded from that model's folder give the same transformer outputs: one adapter, two weighted, fused, unfused, unloaded.
"""

import pytest
import torch

from tests.lora_files import random_lora, rel, save_lora, to_layout
from tests.tiny_pipeline import tiny_diffusers_transformer
from vidgen.dit.model import DiT
from vidgen.lora.mixin import LoraLoaderMixin

diffusers = pytest.importorskip("diffusers")

PARITY = 1e-4  # relative, fp32: our DiT against diffusers' on the same weights (as tests/test_dit_checkpoint.py)
TOL = 1e-5  # relative, fp32: our own paths against each other


class DiTOnly(LoraLoaderMixin):
    """The LoRA methods over a bare DiT, as VideoPipeline has them."""

    def __init__(self, dit):
        self.dit = dit


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    model = tiny_diffusers_transformer()
    path = tmp_path_factory.mktemp("wan_lora") / "transformer"
    model.save_pretrained(path)
    return path


@pytest.fixture
def pair(folder):
    theirs = diffusers.WanTransformer3DModel.from_pretrained(folder).eval()
    oracle = diffusers.WanPipeline(tokenizer=None, text_encoder=None, vae=None, transformer=theirs, scheduler=None)
    return oracle, DiTOnly(DiT.from_pretrained(folder))


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 4, 3, 4, 6, generator=g), torch.tensor([999.0, 137.25]), torch.randn(2, 7, 24, generator=g)


def outputs(oracle, ours, inputs):
    with torch.no_grad():
        return oracle.transformer(*inputs, return_dict=False)[0], ours.dit(*inputs)


def lora_file(dit, layout, tmp_path, seed, name):
    """A LoRA file in `layout`; the Wan layout also carries `.diff_b` bias deltas (diffusers reads them as peft's
    lora_B bias), and the diffusers layout a per-module alpha (alpha_pattern) in its metadata."""
    kohya = layout == "kohya"  # diffusers' musubi converter wants every module of every block, with alphas
    lora = random_lora(dit, modules=None if kohya else ["self_attn.q", "self_attn.v", "cross_attn.k", "cross_attn.o",
                                                          "ffn.0"],
                       rank=3, alpha=None if layout in ("diffusers", "wan_ab") else 5.0, seed=seed)
    sd = to_layout(lora, layout)
    config = None
    if layout == "diffusers":
        config = {"r": 3, "lora_alpha": 6, "alpha_pattern": {"blocks.1.attn2.to_k": 1.5},
                  "target_modules": ["to_q", "to_v", "to_k", "to_out.0", "ffn.net.0.proj"]}
    if layout == "wan":  # diffusers needs a bias for every LoRA module once one has it (else it stays on `meta`)
        g = torch.Generator().manual_seed(seed + 100)
        for name, (_, up, _) in lora.items():
            sd[f"diffusion_model.{name}.diff_b"] = 0.1 * torch.randn(up.shape[0], generator=g)
    return save_lora(sd, tmp_path / f"{name}.safetensors", config)


@pytest.mark.parametrize("layout", ["diffusers", "wan", "wan_ab", "kohya"])
def test_one_adapter_fused_unfused_unloaded(pair, inputs, tmp_path, layout):
    oracle, ours = pair
    path = lora_file(ours.dit, layout, tmp_path, 0, "a")
    base_theirs, base_ours = outputs(oracle, ours, inputs)
    oracle.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name="a")
    assert ours.load_lora_weights(path, adapter_name="a") == "a"
    theirs, got = outputs(oracle, ours, inputs)
    assert rel(theirs, base_theirs) > 0.02  # the LoRA matters
    assert rel(got, theirs) < PARITY
    oracle.fuse_lora()
    ours.fuse_lora()
    theirs_fused, fused = outputs(oracle, ours, inputs)
    assert rel(fused, got) < TOL and rel(fused, theirs_fused) < PARITY
    oracle.unfuse_lora()
    ours.unfuse_lora()
    assert rel(outputs(oracle, ours, inputs)[1], got) < TOL
    oracle.unload_lora_weights()
    ours.unload_lora_weights()
    theirs, back = outputs(oracle, ours, inputs)
    assert rel(back, base_ours) < TOL and rel(back, theirs) < PARITY


def test_two_adapters_with_weights_and_exact_unload(pair, inputs, tmp_path):
    oracle, ours = pair
    a = lora_file(ours.dit, "diffusers", tmp_path, 1, "a")
    b = lora_file(ours.dit, "wan", tmp_path, 2, "b")
    _, base = outputs(oracle, ours, inputs)
    for path, name in ((a, "style"), (b, "motion")):
        oracle.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=name)
        ours.load_lora_weights(path, adapter_name=name)
    assert ours.get_active_adapters() == oracle.get_active_adapters() == ["motion"]  # the one loaded last
    assert ours.get_list_adapters() == oracle.get_list_adapters()
    theirs, got = outputs(oracle, ours, inputs)
    assert rel(got, theirs) < PARITY
    for weights in ([0.5, 1.3], [0.0, -0.7]):
        oracle.set_adapters(["style", "motion"], adapter_weights=weights)
        ours.set_adapters(["style", "motion"], adapter_weights=weights)
        theirs, got = outputs(oracle, ours, inputs)
        assert rel(got, theirs) < PARITY
    oracle.set_adapters(["style"], adapter_weights=0.8)
    ours.set_adapters(["style"], adapter_weights=0.8)
    theirs, got = outputs(oracle, ours, inputs)
    assert rel(got, theirs) < PARITY
    ours.fuse_lora(lora_scale=0.5)
    oracle.fuse_lora(lora_scale=0.5)
    theirs, fused = outputs(oracle, ours, inputs)
    assert rel(fused, theirs) < PARITY
    ours.unfuse_lora()
    oracle.unfuse_lora()
    ours.unload_lora_weights()
    assert rel(outputs(oracle, ours, inputs)[1], base) < TOL  # W + Δ - Δ: back up to rounding


def test_unload_without_fusing_is_bit_exact(pair, inputs, tmp_path):
    oracle, ours = pair
    _, base = outputs(oracle, ours, inputs)
    before = {k: v.clone() for k, v in ours.dit.state_dict().items()}
    ours.load_lora_weights(lora_file(ours.dit, "wan", tmp_path, 3, "a"))  # factors and .diff_b deltas
    ours.load_lora_weights(lora_file(ours.dit, "kohya", tmp_path, 4, "b"))
    ours.set_adapters(["default_0", "default_1"], [0.3, 2.0])
    assert rel(outputs(oracle, ours, inputs)[1], base) > 0.02
    ours.unload_lora_weights()
    assert torch.equal(outputs(oracle, ours, inputs)[1], base)
    after = ours.dit.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], v) for k, v in before.items())
    assert ours.get_list_adapters() == {} and ours.get_active_adapters() == []
