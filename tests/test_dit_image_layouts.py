"""The image-conditioned DiTs in every layout: diffusers' WanTransformer3DModel (I2V with CLIP tokens, FLF2V with their
position embedding) and the original Wan releases (Wan 2.1 I2V/FLF2V with `img_emb`, Wan 2.2 I2V experts without)."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from vidgen.dit.checkpoint import save_dit
from vidgen.dit.config import DiTConfig
from vidgen.dit.model import DiT
from tests.tiny_pipeline import perturb

IMAGE_DIM = 20


def _tiny(image_tokens=None, image=True) -> DiT:
    torch.manual_seed(0)
    cfg = DiTConfig(dim=24, ffn_dim=48, num_heads=2, num_layers=2, in_dim=12, out_dim=4, text_dim=32, freq_dim=32,
                    image_dim=IMAGE_DIM if image else None, image_tokens=image_tokens)
    return perturb(DiT(cfg), 0.3).eval()


def _inputs(tokens=5):
    g = torch.Generator().manual_seed(1)
    x, ctx = torch.randn(2, 12, 2, 4, 6, generator=g), torch.randn(2, 7, 32, generator=g)
    return x, torch.tensor([700.0, 250.0]), ctx, torch.randn(2, tokens, IMAGE_DIM, generator=g)


@pytest.mark.parametrize("image_tokens", [None, 10], ids=["i2v", "flf2v"])
@pytest.mark.parametrize("fmt", ["wan", "diffusers"])
def test_round_trip_through_foreign_layouts(tmp_path, fmt, image_tokens):
    model = _tiny(image_tokens)
    save_dit(model, tmp_path, fmt=fmt)
    keys = load_file(tmp_path / "diffusion_pytorch_model.safetensors").keys()
    if fmt == "wan":
        assert {"img_emb.proj.0.weight", "blocks.0.cross_attn.k_img.weight", "blocks.1.cross_attn.norm_k_img.weight"
                } <= set(keys)
        assert json.loads((tmp_path / "config.json").read_text())["model_type"] == ("flf2v" if image_tokens else "i2v")
        assert ("img_emb.emb_pos" in keys) == bool(image_tokens)
    again = DiT.from_pretrained(tmp_path)
    assert again.config == model.config
    x, t, ctx, img = _inputs(image_tokens or 5)
    with torch.no_grad():
        assert torch.equal(again(x, t, ctx, image_context=img), model(x, t, ctx, image_context=img))


def test_diffusers_loads_our_export_and_agrees(tmp_path):
    diffusers = pytest.importorskip("diffusers")
    model = _tiny(image_tokens=10)
    save_dit(model, tmp_path, fmt="diffusers")
    theirs = diffusers.WanTransformer3DModel.from_pretrained(tmp_path).eval()  # strict: every key used
    x, t, ctx, img = _inputs(10)
    ctx = torch.cat([ctx, torch.zeros(2, 512 - 7, 32)], dim=1)  # diffusers takes the text as exactly 512 tokens
    with torch.no_grad():
        ref = theirs(x, t, ctx, encoder_hidden_states_image=img.reshape(4, 5, IMAGE_DIM), return_dict=False)[0]
        got = model(x, t, ctx, image_context=img)
    assert ((got - ref).norm() / ref.norm()) < 1e-5


def test_wan22_i2v_expert_has_no_clip_branch(tmp_path):
    """Wan 2.2's image-to-video experts say model_type "i2v" like Wan 2.1's, but have no img_emb weights."""
    model = _tiny(image=False)
    save_dit(model, tmp_path, fmt="wan")
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "i2v" and config["in_dim"] == 12
    again = DiT.from_pretrained(tmp_path)
    assert again.config.image_dim is None and again.config.in_dim == 12


def test_prefixed_single_file_with_clip_branch(tmp_path):
    model = _tiny()
    save_dit(model, tmp_path, fmt="wan")
    path = tmp_path / "diffusion_pytorch_model.safetensors"
    save_file({f"model.diffusion_model.{k}": v for k, v in load_file(path).items()}, str(path))
    assert DiT.from_pretrained(tmp_path).config.image_dim == IMAGE_DIM


def test_image_tokens_are_checked():
    model = _tiny(image_tokens=10)
    x, t, ctx, img = _inputs(5)
    with pytest.raises(ValueError, match="pass image_context"):
        model(x, t, ctx)
    with pytest.raises(ValueError, match="exactly 10 image tokens"):
        model(x, t, ctx, image_context=img)
    with pytest.raises(ValueError, match="no image cross-attention"):
        _tiny(image=False)(x, t, ctx, image_context=img)
    with pytest.raises(ValueError, match="needs image_dim"):
        DiTConfig(dim=24, ffn_dim=48, num_heads=2, num_layers=2, image_tokens=10)
