"""fp8 weight storage of the DiT's block linears (vidgen/dit/fp8.py): bytes, accuracy, the module's contract, errors."""

import copy
import dataclasses

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from tests.tiny_pipeline import perturb
from vidgen.dit.config import DiTConfig
from vidgen.dit.fp8 import FP8_MAX, FP8Linear, parameter_bytes, quantize_fp8
from vidgen.dit.model import DiT

TINY = DiTConfig.preset("tiny")
# A relative error of e4m3: 3 mantissa bits, so rounding moves a normal value by at most half a step, 2^-4 of it.
E4M3_HALF_STEP = 2.0**-4
E4M3_SUBNORMAL_HALF_STEP = 2.0**-10  # steps of 2^-9 below the smallest normal 2^-6, in units of the scale


def _block_linears(model):
    return {name: m for name, m in model.named_modules() if name.startswith("blocks.") and isinstance(m, nn.Linear)}


@pytest.fixture(scope="module")
def dit_bf16():
    return perturb(DiT(TINY)).eval().to(torch.bfloat16)


@pytest.fixture(scope="module")
def dit_fp8(dit_bf16):
    return quantize_fp8(copy.deepcopy(dit_bf16))


def _inputs(b=2, f=3, h=4, w=6, seq=5, dtype=torch.bfloat16):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(b, TINY.in_dim, f, h, w, generator=g)
    return x.to(dtype), torch.randn(b, seq, TINY.text_dim, generator=g).to(dtype)


def test_block_linear_weights_take_half_the_bytes(dit_bf16, dit_fp8):
    originals = _block_linears(dit_bf16)
    quantized = {name: m for name, m in dit_fp8.named_modules() if isinstance(m, FP8Linear)}
    assert set(quantized) == set(originals) and originals
    weights = sum(m.weight.numel() for m in originals.values())
    scales = sum(m.out_features for m in originals.values())
    for name, m in quantized.items():
        assert m.weight.element_size() == 1 and originals[name].weight.element_size() == 2
    # Exactly: 1 byte instead of 2 per weight, plus one fp32 scale per output row; biases and the rest unchanged.
    assert parameter_bytes(dit_fp8) == parameter_bytes(dit_bf16) - weights + 4 * scales
    # The scales cost 4/in_features bytes per weight: 2/48 of the bf16 bytes at the tiny width, less when wider.
    wide = perturb(DiT(dataclasses.replace(TINY, dim=256, ffn_dim=512))).to(torch.bfloat16)
    before = sum(m.weight.numel() * m.weight.element_size() for m in _block_linears(wide).values())
    quantize_fp8(wide)
    after = sum(m.weight.numel() + 4 * m.scale.numel() for m in wide.modules() if isinstance(m, FP8Linear))
    assert after / before <= 0.51  # measured 0.507: 0.5 + 2/256 (2/512 for ffn.fc2)


@pytest.mark.parametrize("per_frame", [False, True])
def test_fp8_dit_output_is_close_to_bf16(dit_bf16, dit_fp8, per_frame):
    x, ctx = _inputs()
    t = torch.tensor([[0.0, 500.0, 999.0], [30.0, 30.0, 600.0]]) if per_frame else torch.tensor([10.0, 700.0])
    with torch.no_grad():
        out, ref = dit_fp8(x, t, ctx), dit_bf16(x, t, ctx)
    assert out.dtype == torch.bfloat16 and out.shape == ref.shape
    rel = ((out.float() - ref.float()).norm() / ref.float().norm()).item()
    assert rel < 1.5e-2  # measured 0.98e-2 (scalar t) and 1.03e-2 (per-frame t)


def test_dequantized_weight_is_within_e4m3_precision(dit_bf16, dit_fp8):
    quantized = dict(dit_fp8.named_modules())
    for name, original in _block_linears(dit_bf16).items():
        w = original.weight.float()  # (out, in)
        q = quantized[name]
        absmax = w.abs().amax(dim=1, keepdim=True)  # (out, 1)
        torch.testing.assert_close(q.scale, absmax / FP8_MAX)
        err = (q.dequantized_weight(torch.float32) - w).abs()
        bound = E4M3_HALF_STEP * w.abs() + E4M3_SUBNORMAL_HALF_STEP * q.scale + 1e-6 * absmax  # + fp32 roundoff
        assert (err <= bound).all(), name
        # What the forward multiplies by (bf16): within 2^-3 of each channel's absmax, fp8 and bf16 rounding together.
        assert ((q.dequantized_weight() - w).abs() <= 2.0**-3 * absmax).all(), name


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_forward_matches_its_reference(dit_fp8, dtype):
    layer = dit_fp8.blocks[0].ffn.fc1
    x = torch.randn(2, 7, layer.in_features, dtype=dtype)
    w = layer.dequantized_weight(torch.float64)
    truth = F.linear(x.double(), w, layer.bias.double())
    ref = F.linear(x.bfloat16(), layer.dequantized_weight(), layer.bias)  # the reference at the compute precision
    out = layer(x)
    assert out.dtype == dtype  # the input's dtype, as nn.Linear
    assert (out.double() - truth).abs().max() <= 2 * (ref.double() - truth).abs().max() + 1e-6


def test_state_dict_repr_and_dtype_casts(dit_bf16):
    model = quantize_fp8(copy.deepcopy(dit_bf16))
    layer = model.blocks[1].self_attn.qkv
    state = layer.state_dict()
    assert {k: (v.dtype, tuple(v.shape)) for k, v in state.items()} == {
        "weight": (torch.float8_e4m3fn, (3 * TINY.dim, TINY.dim)),
        "scale": (torch.float32, (3 * TINY.dim, 1)),
        "bias": (torch.bfloat16, (3 * TINY.dim,)),
    }
    assert set(model.state_dict()) == set(dit_bf16.state_dict()) | {f"{n}.scale" for n in _block_linears(dit_bf16)}
    assert "float8_e4m3fn" in repr(layer) and "out_features=144" in repr(layer)
    # A cast of the whole model after quantizing leaves the fp8 weight and its fp32 scale alone, bits included.
    weight, scale = layer.weight.clone(), layer.scale.clone()
    model.float()
    assert layer.weight.dtype == torch.float8_e4m3fn and layer.scale.dtype == torch.float32
    assert torch.equal(layer.weight.view(torch.uint8), weight.view(torch.uint8)) and torch.equal(layer.scale, scale)


def test_default_leaves_embeddings_time_and_head_alone_and_include_chooses(dit_bf16, dit_fp8):
    for name in ("text_embedding.fc1", "time_embedding.fc2", "time_modulation", "head.proj"):
        assert type(dit_fp8.get_submodule(name)) is type(dit_bf16.get_submodule(name))
    only_head = quantize_fp8(copy.deepcopy(dit_bf16), include=lambda name: name == "head.proj")
    assert [n for n, m in only_head.named_modules() if isinstance(m, FP8Linear)] == ["head.proj"]


def test_zero_rows_stay_zero():
    layer = nn.Linear(8, 3)
    with torch.no_grad():
        layer.weight[1] = 0
    q = FP8Linear.from_linear(layer, torch.float32)
    assert torch.isfinite(q.scale).all() and torch.equal(q.dequantized_weight()[1], torch.zeros(8))


def test_errors_name_the_problem(dit_bf16):
    with pytest.raises(ValueError, match="has none"):
        quantize_fp8(nn.Sequential(nn.Linear(4, 4)))
    with pytest.raises(ValueError, match="no nn.Linear layer's name passed"):
        quantize_fp8(copy.deepcopy(dit_bf16), include=lambda name: False)
    with pytest.raises(ValueError, match="already holds 14 FP8Linear"):
        quantize_fp8(quantize_fp8(copy.deepcopy(dit_bf16)))
    with pytest.raises(ValueError, match="compute_dtype"):
        quantize_fp8(copy.deepcopy(dit_bf16), torch.float8_e4m3fn)
    broken = copy.deepcopy(dit_bf16)
    with torch.no_grad():
        broken.blocks[1].ffn.fc2.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="blocks.1.ffn.fc2"):
        quantize_fp8(broken)
    assert not any(isinstance(m, FP8Linear) for m in broken.modules())  # checked before anything changed
