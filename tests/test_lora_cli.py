"""`vidgen generate --lora FILE[:WEIGHT]`: the spec, the checks before the model loads, and the effect on the output."""

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.lora_files import random_lora, save_lora, to_layout
from tests.tiny_pipeline import tiny_vidgen_pipeline
from vidgen.dit.config import DiTConfig
from vidgen.dit.model import DiT
from vidgen.lora.files import parse_lora_spec
from vidgen.video_io import read_video


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_vidgen_pipeline().save_pretrained(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="module")
def lora_path(tmp_path_factory):
    lora = random_lora(DiT(DiTConfig.preset("tiny")), rank=4, alpha=8.0, seed=7)
    return save_lora(to_layout(lora, "kohya"), tmp_path_factory.mktemp("loras") / "style.safetensors")


def test_lora_spec():
    assert parse_lora_spec("a.safetensors") == (Path("a.safetensors"), 1.0)
    assert parse_lora_spec("dir/a.safetensors:0.75") == (Path("dir/a.safetensors"), 0.75)
    assert parse_lora_spec("C:/loras/a.safetensors:-1") == (Path("C:/loras/a.safetensors"), -1.0)
    assert parse_lora_spec("C:/loras/a.safetensors") == (Path("C:/loras/a.safetensors"), 1.0)
    with pytest.raises(ValueError, match="finite"):
        parse_lora_spec("a.safetensors:nan")


@pytest.mark.parametrize("make, extra, message", [
    (None, [], "LoRA file not found"),
    (lambda p: p.write_bytes(b"\x10garbage"), [], "not a readable safetensors file"),
    (lambda p: save_lora({"lora_te_x.lora_down.weight": torch.zeros(2, 3)}, p), [],
     "key 'lora_te_x.lora_down.weight' matches no module"),
    (lambda p: save_lora({"transformer.blocks.5.attn1.to_q.lora_A.weight": torch.zeros(2, 48)}, p), [],
     "key 'transformer.blocks.5.attn1.to_q.lora_A.weight' matches no module"),
    (lambda p: save_lora({"transformer.blocks.0.attn1.to_q.lora_A.weight": torch.zeros(2, 48)}, p), ["--fp8"],
     "--lora does not combine with --fp8"),
])
def test_bad_lora_fails_before_the_model_loads(model_dir, tmp_path, monkeypatch, capsys, make, extra, message):
    from vidgen import cli
    from vidgen.pipeline import VideoPipeline

    def no_loading(*a, **k):
        raise AssertionError("the model was loaded before --lora was checked")

    path = tmp_path / "x.safetensors"
    if make is not None:
        make(path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(VideoPipeline, "from_pretrained", no_loading)
    argv = ["generate", "a red circle", "--model", str(model_dir), "-o", "clip.mp4", "--lora", str(path), *extra]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and (str(path) in err or extra) and err.count("\n") == 1, err


def test_apply_loras_loads_and_weights_each_file(lora_path, tmp_path):
    from vidgen.lora.cli import apply_loras

    pipe = tiny_vidgen_pipeline()
    apply_loras(pipe, ((lora_path, 0.5), (lora_path, -0.25)))
    assert pipe.get_active_adapters() == ["lora0", "lora1"]
    assert pipe.lora_adapters.weights == {"lora0": 0.5, "lora1": -0.25}
    pipe.unload_lora_weights()
    assert pipe.get_list_adapters() == {}


@pytest.mark.slow
def test_generate_with_lora_weights(model_dir, lora_path, tmp_path, monkeypatch, capsys):
    from vidgen import cli

    monkeypatch.chdir(tmp_path)
    base = ["generate", "a red circle moves left", "--model", str(model_dir), "--frames", "1", "--steps", "2",
            "--seed", "1", "--no-progress"]
    frames = {}
    for name, loras in (("none", []), ("zero", ["--lora", f"{lora_path}:0"]),
                        ("one", ["--lora", str(lora_path)]), ("two", ["--lora", f"{lora_path}:0.5"] * 2)):
        assert cli.main(base + ["-o", f"{name}.png", *loras]) == 0, capsys.readouterr().err
        frames[name] = read_video(tmp_path / f"{name}.png")[0].astype(np.int32)
    assert np.array_equal(frames["zero"], frames["none"])  # weight 0: the base model exactly
    assert np.abs(frames["one"] - frames["none"]).max() > 0  # the LoRA changes the picture
    assert np.abs(frames["two"] - frames["one"]).max() <= 1  # two halves of one LoRA: the same update
