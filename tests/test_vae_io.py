"""Loading and saving, bad inputs, dtypes."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from vae_oracle import tiny_vae

from causal_vae import CausalVAE, VAEConfig
from causal_vae.config import PRESETS, preset


@pytest.fixture(scope="module")
def vae():
    return tiny_vae()


def test_save_and_load_round_trip(vae, tmp_path):
    vae.save_pretrained(tmp_path / "m")
    again = CausalVAE.from_pretrained(tmp_path / "m")
    assert again.config == vae.config
    video = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    torch.testing.assert_close(again.encode(video), vae.encode(video), atol=0, rtol=0)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        vae.save_pretrained(tmp_path / "m")
    vae.save_pretrained(tmp_path / "m", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]


def test_presets_build_and_validate():
    assert set(PRESETS) >= {"wan2.1", "tiny", "shapes"}
    cfg = preset("wan2.1")
    assert (cfg.z_dim, cfg.spatial_compression, cfg.temporal_compression) == (16, 8, 4)
    assert preset("shapes").base_dim <= 32 and preset("shapes").z_dim == 16
    with pytest.raises(KeyError, match="known presets"):
        preset("nope")
    with pytest.raises(ValueError, match="latents_mean"):
        VAEConfig(z_dim=4)
    with pytest.raises(ValueError, match="unknown key"):
        VAEConfig.from_dict({"base_dim": 8, "colour": 1})


def _corrupt(tmp_path, vae, edit):
    folder = tmp_path / "bad"
    vae.save_pretrained(folder)
    sd = load_file(folder / "model.safetensors")
    edit(sd)
    save_file(sd, folder / "model.safetensors")
    return folder


def test_missing_unexpected_and_misshaped_keys_are_named(vae, tmp_path):
    folder = _corrupt(tmp_path, vae, lambda sd: sd.pop("decoder.conv_out.bias"))
    with pytest.raises(ValueError, match=r"missing key.*decoder\.conv_out\.bias"):
        CausalVAE.from_pretrained(folder)
    folder = _corrupt(tmp_path / "2", vae, lambda sd: sd.update(extra=torch.zeros(1)))
    with pytest.raises(ValueError, match=r"unexpected key.*extra"):
        CausalVAE.from_pretrained(folder)
    folder = _corrupt(tmp_path / "3", vae, lambda sd: sd.update({"quant_conv.bias": torch.zeros(3)}))
    with pytest.raises(ValueError, match=r"shape mismatch.*quant_conv\.bias"):
        CausalVAE.from_pretrained(folder)


def test_another_models_files_are_refused(vae, tmp_path):
    folder = tmp_path / "dit"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"_class_name": "WanTransformer3DModel"}))
    with pytest.raises(ValueError, match="WanTransformer3DModel"):
        CausalVAE.from_pretrained(folder)
    path = tmp_path / "other.pth"
    torch.save({"blocks.0.attn.q.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(ValueError, match="not an original Wan VAE"):
        CausalVAE.from_pretrained(path)
    with pytest.raises(ValueError, match="another model"):
        CausalVAE.from_pretrained(path, config=vae.config)
    with pytest.raises(FileNotFoundError):
        CausalVAE.from_pretrained(tmp_path / "nothing")


def test_pth_loading_refuses_pickled_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    torch.save({"x": Evil()}, path)
    with pytest.raises(Exception, match="(?i)weights_only|unsupported|global"):
        CausalVAE.from_pretrained(path)


@pytest.mark.parametrize(
    "shape, match",
    [
        ((3, 5, 16, 16), "5D tensor"),
        ((1, 4, 5, 16, 16), "3 channels"),
        ((1, 3, 6, 16, 16), "6 frames is not 1\\+4k"),
        ((1, 3, 5, 20, 16), "not a multiple of 8"),
    ],
)
def test_bad_video_errors(vae, shape, match):
    with pytest.raises(ValueError, match=match):
        vae.encode(torch.zeros(shape))


def test_bad_values_and_streams(vae):
    video = torch.zeros(1, 3, 5, 16, 16)
    video[0, 0, 2, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        vae.encode(video)
    with pytest.raises(ValueError, match="empty stream"):
        list(vae.stream_encode([]))
    with pytest.raises(ValueError, match="empty stream"):
        list(vae.stream_decode(iter([])))
    with pytest.raises(ValueError, match="6 frames in all"):
        list(vae.stream_encode([torch.zeros(1, 3, 6, 16, 16)]))
    with pytest.raises(ValueError, match="every part must match"):
        list(vae.stream_encode([torch.zeros(1, 3, 1, 16, 16), torch.zeros(1, 3, 4, 16, 24)]))
    with pytest.raises(ValueError, match=r"\(B, 4, F, h, w\)"):
        vae.decode(torch.zeros(1, 16, 2, 2, 2))
    with pytest.raises(ValueError, match="infinite"):
        vae.decode(torch.full((1, 4, 1, 2, 2), float("inf")))


def test_dtype_and_bf16_smoke(vae):
    import copy

    assert vae.dtype == torch.float32
    half = copy.deepcopy(vae).to(torch.bfloat16)
    assert half.dtype == torch.bfloat16
    image = torch.rand(1, 3, 1, 16, 16) * 2 - 1
    z = half.encode(image)
    x = half.decode(z)
    assert z.dtype == x.dtype == torch.bfloat16 and x.shape == image.shape and torch.isfinite(x.float()).all()
    assert ((z.float() - vae.encode(image)).abs().max() / vae.encode(image).abs().max()) < 0.1
