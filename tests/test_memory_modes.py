"""The memory modes through the pipeline's loader: offloaded runs give the plain run's latents exactly (on CPU the
moves are copies, so equality checks the hooks' order and the stream cache); fp8 stays close; compiled blocks match."""

import pytest
import torch

from tests.tiny_pipeline import tiny_vidgen_pipeline
from vidgen.memory import MemoryOptions
from vidgen.pipeline import VideoPipeline


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tiny_vidgen_pipeline().save_pretrained(tmp_path_factory.mktemp("models") / "tiny")


def _latents(pipe):
    return pipe("a red circle", seed=3, progress=False, output_type="latent").frames


@pytest.fixture(scope="module")
def plain(folder):
    return _latents(VideoPipeline.from_pretrained(folder, device="cpu", progress=False))


@pytest.mark.parametrize("offload", ["model", "blocks"])
def test_offloaded_pipeline_equals_the_plain_one(folder, plain, offload):
    pipe = VideoPipeline.from_pretrained(folder, device="cpu", progress=False, memory=MemoryOptions(offload=offload))
    assert pipe.offload is not None and pipe.device == torch.device("cpu")
    assert torch.equal(_latents(pipe), plain)
    frames = pipe("a red circle", seed=3, progress=False, output_type="pt").frames  # the VAE through the hooks
    assert frames.shape[1:] == (5, 32, 32, 3)
    with pytest.raises(ValueError, match="offload"):
        pipe.to("cpu")


def test_fp8_weights_stay_close_and_halve_the_block_weights(folder, plain):
    from vidgen.dit.fp8 import FP8Linear, parameter_bytes

    base = VideoPipeline.from_pretrained(folder, device="cpu", progress=False)
    pipe = VideoPipeline.from_pretrained(folder, device="cpu", progress=False, memory=MemoryOptions(fp8=True))
    assert any(isinstance(m, FP8Linear) for m in pipe.dit.blocks.modules())
    assert parameter_bytes(pipe.dit.blocks) < 0.6 * parameter_bytes(base.dit.blocks.to(torch.bfloat16))
    out = _latents(pipe)
    assert ((out - plain).norm() / plain.norm()).item() < 0.05  # fp32 compute here; bf16's own error is ~1%
    with pytest.raises(ValueError, match="fp8"):
        pipe.dit.save_pretrained(folder.parent / "fp8")


def test_compiled_blocks_give_the_same_latents(folder, plain):
    memory = MemoryOptions(compile=True, compile_backend="aot_eager")
    pipe = VideoPipeline.from_pretrained(folder, device="cpu", progress=False, memory=memory)
    torch.testing.assert_close(_latents(pipe), plain, rtol=1e-5, atol=1e-5)


def test_memory_flags_are_checked_before_loading(folder, tmp_path, monkeypatch, capsys):
    from vidgen import cli

    def refuse(*a, **k):
        raise AssertionError("loaded before the flags were checked")

    monkeypatch.setattr(VideoPipeline, "from_pretrained", refuse)
    monkeypatch.chdir(tmp_path)
    argv = ["generate", "a red circle", "-o", "a.mp4", "--model", str(folder)]
    assert cli.main(argv + ["--offload", "blocks", "--resident-blocks", "0"]) == 2
    assert "resident_blocks must be a whole number >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(ValueError, match="offload must be"):
        MemoryOptions(offload="disk")
