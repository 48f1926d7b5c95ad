"""LoRA loading into our DiT against closed forms: every layout gives W + (alpha/rank)·up@down in the right rows of
our fused projections; weights, fuse/unfuse, unload (bit-exact), `.diff` deltas, bad files, packed batches, bf16."""

import copy

import pytest
import torch

from tests.lora_files import WAN_TO_DIFFUSERS, WAN_TO_OURS, merged, random_lora, rel, save_lora, to_layout
from vidgen.dit.config import DiTConfig
from vidgen.dit.model import DiT
from vidgen.lora.adapters import LoraAdapters
from vidgen.lora.inject import add_lora, lora_targets, remove_lora_layers
from vidgen.lora.keys import KeyTable, Target, parse_key
from vidgen.lora.plan import base_param_names

TOL = 1e-5  # relative, fp32


@pytest.fixture
def dit():
    torch.manual_seed(0)
    model = DiT(DiTConfig.preset("tiny")).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(1)
    return torch.randn(1, 4, 2, 4, 4, generator=g), torch.tensor([700.0]), torch.randn(1, 5, 24, generator=g)


def run(model, inputs):
    with torch.no_grad():
        return model(*inputs)


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_key_table_maps_every_layout_to_our_fused_rows(dit):
    table = KeyTable.build(dit.config.num_layers, base_param_names(dit))
    cases = {
        "transformer.blocks.1.attn1.to_k.lora_A.weight": Target("blocks.1.self_attn.qkv", 1, 3),
        "diffusion_model.blocks.1.self_attn.v.lora_down.weight": Target("blocks.1.self_attn.qkv", 2, 3),
        "model.diffusion_model.blocks.0.cross_attn.v.lora_up.weight": Target("blocks.0.cross_attn.kv", 1, 2),
        "lora_unet_blocks_1_cross_attn_k.lora_down.weight": Target("blocks.1.cross_attn.kv", 0, 2),
        "lora_unet_blocks_0_ffn_2.alpha": Target("blocks.0.ffn.fc2"),
        "transformer.blocks.0.ffn.net.0.proj.lora_B.weight": Target("blocks.0.ffn.fc1"),
        "diffusion_model.blocks.0.self_attn.o.diff_b": Target("blocks.0.self_attn.out.bias"),
        "diffusion_model.blocks.0.norm3.diff": Target("blocks.0.cross_norm.weight"),
        "diffusion_model.blocks.0.modulation.diff": Target("blocks.0.modulation"),
        "diffusion_model.head.head.lora_A.weight": Target("head.proj"),
        "blocks.0.self_attn.qkv.lora_A.weight": Target("blocks.0.self_attn.qkv"),  # our own names
    }
    for key, target in cases.items():
        assert table.resolve(parse_key(key)) == target, key
    for key in ("transformer.blocks.2.attn1.to_q.lora_A.weight", "diffusion_model.blocks.0.self_attn.x.lora_A.weight",
                "lora_te_text_model_encoder_layers_0_q.lora_down.weight", "blocks.0.self_attn.q.weight"):
        assert parse_key(key) is None or table.resolve(parse_key(key)) is None, key


def test_image_cross_attention_keys():
    """Wan 2.1 I2V LoRAs adapt the image keys/values too (our fused cross_attn.kv_img)."""
    import dataclasses

    model = DiT(dataclasses.replace(DiTConfig.preset("tiny"), image_dim=12))
    table = KeyTable.build(model.config.num_layers, base_param_names(model))
    for key in ("diffusion_model.blocks.0.cross_attn.k_img.lora_down.weight",
                "lora_unet_blocks_0_cross_attn_v_img.lora_up.weight",
                "diffusion_model.blocks.0.cross_attn.k_img.alpha"):
        target = table.resolve(parse_key(key))
        assert target is not None and "cross_attn.kv_img" in str(target), (key, target)


@pytest.mark.parametrize("layout", ["diffusers", "wan", "wan_ab", "kohya"])
def test_each_layout_equals_the_closed_form(dit, inputs, tmp_path, layout):
    lora = random_lora(dit, rank=3, alpha=6.0)
    config = {"r": 3, "lora_alpha": 6.0} if layout == "diffusers" else None
    path = save_lora(to_layout(lora, layout), tmp_path / "lora.safetensors", config)
    want = run(merged(dit, [(lora, 1.0)]), inputs)
    assert rel(want, run(dit, inputs)) > 0.05  # the LoRA changes the output
    LoraAdapters(dit).load(path)
    assert rel(run(dit, inputs), want) < TOL


def test_separate_qkv_loras_fuse_exactly_with_missing_parts_and_own_ranks(dit, inputs):
    # q and v (no k) with ranks 2 and 5 and alphas of their own; k of the cross-attention only; block 1 untouched
    lora = random_lora(dit, modules=["self_attn.q", "self_attn.v", "cross_attn.k"], blocks=[0],
                       ranks={"self_attn.q": 2, "self_attn.v": 5})
    lora = {k: (d, u, a) for (k, (d, u, _)), a in zip(lora.items(), (4.0, None, 1.5))}
    want = run(merged(dit, [(lora, 1.0)]), inputs)
    ad = LoraAdapters(dit)
    ad.load(to_layout(lora, "wan"))
    layer = dit.blocks[0].self_attn.qkv
    assert layer.lora_A[ad.names[0]].weight.shape == (7, 48)  # rank 2 + 0 + 5
    assert rel(run(dit, inputs), want) < TOL


def test_adapter_weights_enable_disable_delete_and_exact_unload(dit, inputs):
    base_state, base = state(dit), run(dit, inputs)
    a, b = random_lora(dit, seed=1, alpha=2.0), random_lora(dit, modules=["ffn.0", "cross_attn.q"], seed=2)
    want = {w: run(merged(dit, [(a, w[0]), (b, w[1])]), inputs) for w in ((1.0, 1.0), (0.5, -1.25), (0.0, 1.0))}
    ad = LoraAdapters(dit)
    ad.load(to_layout(a, "kohya"), "a")
    ad.load(to_layout(b, "diffusers"), "b")
    assert ad.active == ["b"]  # as in diffusers, the adapter loaded last
    assert rel(run(dit, inputs), want[0.0, 1.0]) < TOL
    ad.set_adapters(["a", "b"])
    assert rel(run(dit, inputs), want[1.0, 1.0]) < TOL
    ad.set_adapters(["a", "b"], [0.5, -1.25])
    assert rel(run(dit, inputs), want[0.5, -1.25]) < TOL
    ad.set_adapters("b")
    assert rel(run(dit, inputs), want[0.0, 1.0]) < TOL
    ad.enable(False)
    assert torch.equal(run(dit, inputs), base)
    ad.enable(True)
    ad.delete("b")
    assert ad.names == ["a"] and ad.active == []
    assert torch.equal(run(dit, inputs), base)
    ad.unload()
    assert torch.equal(run(dit, inputs), base)
    assert state(dit).keys() == base_state.keys()
    assert all(torch.equal(v, base_state[k]) for k, v in state(dit).items())


def test_fuse_unfuse_and_lora_scale(dit, inputs):
    base = run(dit, inputs)
    a = random_lora(dit, seed=3, alpha=3.0)
    doubled = run(merged(dit, [(a, 1.4)]), inputs)
    ad = LoraAdapters(dit)
    ad.load(to_layout(a, "wan"))
    ad.set_adapters(ad.names, 0.7)
    unfused = run(dit, inputs)
    ad.fuse()
    assert rel(run(dit, inputs), unfused) < TOL
    with pytest.raises(ValueError, match="unfuse_lora"):
        ad.set_adapters(ad.names, 1.0)
    ad.unfuse()
    assert rel(run(dit, inputs), unfused) < TOL
    ad.fuse(lora_scale=2.0)
    assert rel(run(dit, inputs), doubled) < TOL
    ad.unload()  # unfuses first: back to the base model, up to the rounding of W + Δ - Δ
    assert rel(run(dit, inputs), base) < TOL
    assert not any("lora" in k for k in dit.state_dict())


def test_diff_and_bias_deltas_apply_with_weights_and_unload_exactly(dit, inputs):
    base_state, base = state(dit), run(dit, inputs)
    g = torch.Generator().manual_seed(5)
    d = dit.config.dim
    sd = {
        "diffusion_model.blocks.0.self_attn.k.diff": torch.randn(d, d, generator=g) * 0.05,
        "diffusion_model.blocks.0.self_attn.k.diff_b": torch.randn(d, generator=g) * 0.1,
        "diffusion_model.blocks.1.norm3.diff": torch.randn(d, generator=g) * 0.1,
        "diffusion_model.blocks.1.modulation.diff": torch.randn(1, 6, d, generator=g) * 0.1,
        "diffusion_model.blocks.1.ffn.2.diff_b": torch.randn(d, generator=g) * 0.1,
        "transformer.blocks.1.attn2.to_v.lora_A.weight": torch.randn(2, d, generator=g) * 0.1,
        "transformer.blocks.1.attn2.to_v.lora_B.weight": torch.randn(d, 2, generator=g) * 0.1,
        "transformer.blocks.1.attn2.to_v.lora_B.bias": torch.randn(d, generator=g) * 0.1,
    }
    ref = copy.deepcopy(dit)

    def expect(w):
        with torch.no_grad():
            for (p, o), q in zip(ref.state_dict().items(), base_state.values()):
                o.copy_(q)
            b0, b1 = ref.blocks[0], ref.blocks[1]
            b0.self_attn.qkv.weight[d:2 * d] += w * sd["diffusion_model.blocks.0.self_attn.k.diff"]
            b0.self_attn.qkv.bias[d:2 * d] += w * sd["diffusion_model.blocks.0.self_attn.k.diff_b"]
            b1.cross_norm.weight += w * sd["diffusion_model.blocks.1.norm3.diff"]
            b1.modulation += w * sd["diffusion_model.blocks.1.modulation.diff"]
            b1.ffn.fc2.bias += w * sd["diffusion_model.blocks.1.ffn.2.diff_b"]
            b1.cross_attn.kv.weight[d:] += w * (sd["transformer.blocks.1.attn2.to_v.lora_B.weight"]
                                                @ sd["transformer.blocks.1.attn2.to_v.lora_A.weight"])
            b1.cross_attn.kv.bias[d:] += w * sd["transformer.blocks.1.attn2.to_v.lora_B.bias"]
        return run(ref, inputs)

    ad = LoraAdapters(dit)
    ad.load(sd, "d")
    assert rel(run(dit, inputs), expect(1.0)) < TOL
    ad.set_adapters("d", 0.3)
    assert rel(run(dit, inputs), expect(0.3)) < TOL
    ad.unload()
    assert torch.equal(run(dit, inputs), base)
    assert all(torch.equal(v, base_state[k]) for k, v in state(dit).items())


def test_fuse_keeps_a_weight_delta_on_the_same_layer(dit, inputs):
    base_state, base = state(dit), run(dit, inputs)
    d = dit.config.dim
    sd = to_layout(random_lora(dit, modules=["self_attn.q"], blocks=[0], alpha=2.0, seed=6), "wan")
    g = torch.Generator().manual_seed(6)
    sd["diffusion_model.blocks.0.self_attn.k.diff"] = 0.05 * torch.randn(d, d, generator=g)
    ad = LoraAdapters(dit)
    ad.load(sd)
    ad.set_adapters(ad.names, 0.6)
    unfused = run(dit, inputs)
    ad.fuse(lora_scale=1.5)
    fused = run(dit, inputs)
    ad.unfuse()
    assert rel(run(dit, inputs), unfused) < TOL
    ad.set_adapters(ad.names, 0.9)
    assert rel(fused, run(dit, inputs)) < TOL  # fused at 0.6 x 1.5 = unfused at 0.9: factors and delta alike
    ad.unload()  # the fused layer's weight also holds the delta: restored from its copy, so exactly
    assert torch.equal(run(dit, inputs), base)
    assert all(torch.equal(v, base_state[k]) for k, v in state(dit).items())


def _bad_files(dit, tmp_path):
    d = dit.config.dim
    good = to_layout(random_lora(dit, modules=["self_attn.q"], blocks=[0]), "wan")
    return {
        "nothing matches": ({"text_encoder.layers.0.q.lora_A.weight": torch.zeros(2, 8)},
                            "text_encoder.layers.0.q.lora_A.weight"),
        "one unknown key": ({**good, "diffusion_model.blocks.9.self_attn.q.lora_down.weight": torch.zeros(3, d)},
                            "blocks.9.self_attn.q.lora_down.weight"),
        "wrong in dim": ({**good, "diffusion_model.blocks.1.ffn.0.lora_down.weight": torch.zeros(3, d + 1),
                          "diffusion_model.blocks.1.ffn.0.lora_up.weight": torch.zeros(dit.config.ffn_dim, 3)},
                         "blocks.1.ffn.0.lora_down.weight"),
        "rank mismatch": ({"lora_unet_blocks_0_cross_attn_k.lora_down.weight": torch.zeros(3, d),
                           "lora_unet_blocks_0_cross_attn_k.lora_up.weight": torch.zeros(d, 4)},
                          "lora_unet_blocks_0_cross_attn_k.lora_down.weight"),
        "up without down": ({"transformer.blocks.0.attn1.to_v.lora_B.weight": torch.zeros(d, 2)},
                            "attn1.to_v.lora_B.weight"),
        "diff shape": ({"diffusion_model.blocks.0.norm3.diff": torch.zeros(d + 2)}, "blocks.0.norm3.diff"),
    }


def test_bad_files_name_the_file_and_key_and_leave_the_model_unchanged(dit, inputs, tmp_path):
    before, base = state(dit), run(dit, inputs)
    ad = LoraAdapters(dit)
    ad.load(to_layout(random_lora(dit, modules=["ffn.2"], seed=9), "wan"), "kept")
    with_kept = run(dit, inputs)
    for i, (what, (sd, key)) in enumerate(_bad_files(dit, tmp_path).items()):
        path = save_lora(sd, tmp_path / f"bad{i}.safetensors")
        with pytest.raises(ValueError) as err:
            ad.load(path)
        assert str(path) in str(err.value) and key in str(err.value), (what, str(err.value))
        assert "\n" not in str(err.value)
        assert torch.equal(run(dit, inputs), with_kept), what
        assert ad.names == ["kept"]
    for missing in (tmp_path / "nope.safetensors", tmp_path):
        with pytest.raises(ValueError, match="not found"):
            ad.load(missing)
    (tmp_path / "junk.safetensors").write_bytes(b"\x05not a header")
    with pytest.raises(ValueError, match="junk.safetensors"):
        ad.load(tmp_path / "junk.safetensors")
    ad.unload()
    assert torch.equal(run(dit, inputs), base)
    assert all(torch.equal(v, before[k]) for k, v in state(dit).items())


def test_fp8_dit_is_refused_unchanged(dit, inputs):
    from vidgen.dit.fp8 import quantize_fp8

    quantize_fp8(dit, compute_dtype=torch.float32)
    before = state(dit)
    with pytest.raises(ValueError, match="fp8"):
        LoraAdapters(dit).load(to_layout(random_lora(dit, modules=["ffn.0"]), "wan"))
    assert all(torch.equal(v, before[k]) for k, v in state(dit).items())


def test_partial_file_loads(dit, inputs):
    lora = random_lora(dit, modules=["cross_attn.o"], blocks=[1])
    want = run(merged(dit, [(lora, 1.0)]), inputs)
    LoraAdapters(dit).load(to_layout(lora, "kohya"))
    assert rel(run(dit, inputs), want) < TOL


def test_packed_batches_with_adapters_equal_single_runs(dit):
    LoraAdapters(dit).load(to_layout(random_lora(dit, alpha=1.0), "diffusers"))
    g = torch.Generator().manual_seed(3)
    xs = [torch.randn(4, 2, 4, 4, generator=g), torch.randn(4, 1, 2, 6, generator=g)]
    cs = [torch.randn(5, 24, generator=g), torch.randn(3, 24, generator=g)]
    ts = [300.0, torch.tensor([0.0])]
    with torch.no_grad():
        packed = dit.forward_packed(xs, ts, cs)
        for x, t, c, p in zip(xs, ts, cs, packed):
            one = dit(x[None], torch.as_tensor(t).reshape(1, -1) if torch.as_tensor(t).ndim else
                      torch.tensor([t]), c[None])[0]
            assert rel(p, one) < 1e-5


def test_bf16_on_cpu_with_adapters(dit, inputs):
    lora = random_lora(dit, alpha=4.0, seed=4)
    want = run(merged(dit, [(lora, 1.0)]).to(torch.bfloat16), [inputs[0].bfloat16(), inputs[1],
                                                               inputs[2].bfloat16()])
    model = dit.to(torch.bfloat16)
    ad = LoraAdapters(model)
    ad.load(to_layout(lora, "wan"))
    assert model.blocks[0].self_attn.qkv.lora_A[ad.names[0]].weight.dtype == torch.bfloat16
    got = run(model, [inputs[0].bfloat16(), inputs[1], inputs[2].bfloat16()])
    assert got.dtype == torch.bfloat16 and rel(got, want) < 3e-2  # bf16 rounding of two different sums
    ad.fuse()
    assert rel(run(model, [inputs[0].bfloat16(), inputs[1], inputs[2].bfloat16()]), want) < 3e-2


def test_step_cache_runs_with_adapters(dit, inputs):
    from vidgen.dit.step_cache import StepCache, StepCacheConfig

    LoraAdapters(dit).load(to_layout(random_lora(dit), "wan"))
    cache = StepCache(StepCacheConfig(0.5))
    with torch.no_grad():
        first = dit(*inputs, step_cache=cache)
        again = dit(*inputs, step_cache=cache)  # the same input: the second step reuses the cached blocks
    assert cache.skipped == 1 and rel(again, first) < TOL


def test_add_lora_for_training_starts_as_identity(dit, inputs):
    base = run(dit, inputs)
    targets = lora_targets(dit)
    assert len(targets) == 7 * dit.config.num_layers
    add_lora(dit, "style", {t: 4 for t in targets}, alphas={t: 8.0 for t in targets})
    trainable = [n for n, p in dit.named_parameters() if p.requires_grad and "lora_" in n]
    assert len(trainable) == 2 * len(targets)
    assert dit.blocks[0].ffn.fc1.scaling["style"] == 2.0
    assert torch.equal(run(dit, inputs), base)  # B starts at zero
    for name, message in (("style", "already loaded"), ("train", "not usable"), ("a.b", "not usable")):
        with pytest.raises(ValueError, match=message):
            add_lora(dit, name, {targets[0]: 2})
    with pytest.raises(ValueError, match="no module 'blocks.0.attn1.to_q'"):
        add_lora(dit, "other", {"blocks.0.attn1.to_q": 2})


@pytest.mark.distributed
def test_sequence_parallel_with_adapters(tmp_path):
    from tests.distributed import torchrun

    for rank, r in enumerate(torchrun("dist_lora_worker.py", tmp_path / "out.json")):
        assert r["unfused"] < 1e-5 * r["scale"] and r["fused"] < 1e-5 * r["scale"], (rank, r)


@pytest.mark.slow
def test_compiled_blocks_with_adapters_match_eager(dit, inputs):
    from vidgen.dit.compile import compile_blocks

    torch._dynamo.reset()
    ad = LoraAdapters(dit)
    ad.load(to_layout(random_lora(dit, alpha=2.0), "wan"))
    eager = run(dit, inputs)
    compile_blocks(dit, backend="aot_eager")  # fullgraph: a graph break in peft's layers would fail here
    assert rel(run(dit, inputs), eager) < TOL
    torch._dynamo.reset()


def test_saving_with_adapters_loaded_is_refused(dit, tmp_path):
    ad = LoraAdapters(dit)
    ad.load(to_layout(random_lora(dit, modules=["ffn.0"]), "wan"))
    with pytest.raises(ValueError, match="unload_lora_weights"):
        dit.save_pretrained(tmp_path / "dit")
    assert not (tmp_path / "dit" / "config.json").exists()
    ad.unload()
    dit.save_pretrained(tmp_path / "dit")
    assert DiT.from_pretrained(tmp_path / "dit").state_dict().keys() == dit.state_dict().keys()


def test_a_trained_fused_adapter_exported_per_projection_loads_back(dit, inputs):
    """add_lora on our fused modules, B made nonzero as training would, exported the diffusers way (each q/k/v gets
    the shared A and its own rows of B, alpha in the metadata) and loaded through the loader: the same model."""
    ranks = {t: 4 for t in lora_targets(dit)}
    add_lora(dit, "trained", ranks, alphas={t: 2.0 for t in ranks})
    g = torch.Generator().manual_seed(8)
    with torch.no_grad():
        for t in ranks:
            dit.get_submodule(t).lora_B["trained"].weight.normal_(0, 0.2, generator=g)
    trained = run(dit, inputs)
    sd = {}
    for t in ranks:
        layer, block = dit.get_submodule(t), t.split(".")[1]
        a, b = layer.lora_A["trained"].weight, layer.lora_B["trained"].weight
        for wan, (ours, part, parts) in WAN_TO_OURS.items():
            if t == f"blocks.{block}.{ours}":
                name = f"transformer.blocks.{block}.{WAN_TO_DIFFUSERS[wan]}"
                sd[f"{name}.lora_A.weight"] = a.clone()
                sd[f"{name}.lora_B.weight"] = b.chunk(parts)[part].clone()
    remove_lora_layers(dit)
    LoraAdapters(dit).load(sd, metadata={"r": 4, "lora_alpha": 2.0})
    assert rel(run(dit, inputs), trained) < TOL


def test_second_expert_takes_its_own_lora(inputs):
    """Wan 2.2 A14B: load_into_transformer_2 adapts the low-noise expert only; names act on whichever expert holds
    them; unload returns both to their base weights."""
    import dataclasses

    from tests.tiny_pipeline import tiny_vidgen_pipeline

    pipe = tiny_vidgen_pipeline()
    pipe.dit_2 = copy.deepcopy(pipe.dit)
    pipe.config = dataclasses.replace(pipe.config, boundary_ratio=0.875)
    base, base_2 = run(pipe.dit, inputs), run(pipe.dit_2, inputs)
    high, low = random_lora(pipe.dit, seed=1), random_lora(pipe.dit_2, seed=2)
    want_high, want_low = run(merged(pipe.dit, [(high, 0.5)]), inputs), run(merged(pipe.dit_2, [(low, 2.0)]), inputs)
    pipe.load_lora_weights(to_layout(high, "wan"), adapter_name="high")
    pipe.load_lora_weights(to_layout(low, "wan"), adapter_name="low", load_into_transformer_2=True)
    assert pipe.get_list_adapters() == {"transformer": ["high"], "transformer_2": ["low"]}
    pipe.set_adapters(["high", "low"], adapter_weights=[0.5, 2.0])
    assert pipe.get_active_adapters() == ["high", "low"]
    assert rel(run(pipe.dit, inputs), want_high) < TOL and rel(run(pipe.dit_2, inputs), want_low) < TOL
    pipe.fuse_lora()
    assert rel(run(pipe.dit_2, inputs), want_low) < TOL
    pipe.unload_lora_weights()  # unfused first: the base weights again up to rounding
    assert rel(run(pipe.dit, inputs), base) < TOL and rel(run(pipe.dit_2, inputs), base_2) < TOL
    base, base_2 = run(pipe.dit, inputs), run(pipe.dit_2, inputs)
    pipe.load_lora_weights(to_layout(high, "wan"), adapter_name="x")
    with pytest.raises(ValueError, match="already loaded"):  # names are unique over both experts
        pipe.load_lora_weights(to_layout(low, "wan"), adapter_name="x", load_into_transformer_2=True)
    pipe.unload_lora_weights()  # never fused: bit for bit
    assert torch.equal(run(pipe.dit, inputs), base) and torch.equal(run(pipe.dit_2, inputs), base_2)


def test_load_into_transformer_2_needs_a_second_expert():
    from tests.tiny_pipeline import tiny_vidgen_pipeline

    pipe = tiny_vidgen_pipeline()
    with pytest.raises(ValueError, match="one expert"):
        pipe.load_lora_weights(to_layout(random_lora(pipe.dit), "wan"), load_into_transformer_2=True)
