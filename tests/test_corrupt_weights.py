"""A broken file in any part of a model folder fails as one ValueError (WeightsError) that names the file and says what
is wrong; the command line prints it as one line. Files are cut short, overwritten, emptied, or rewritten with a tensor
missing, mis-shaped or of an integer dtype."""

import io
import json
import pickle
import random
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from causal_vae import CausalVAE
from causal_vae.convert import ours_to_original
from causal_vae.io import WeightsError
from tests.tiny_pipeline import tiny_vidgen_pipeline
from vidgen.cli import main
from vidgen.dit.checkpoint import export_state_dict, save_dit
from vidgen.pipeline import VideoPipeline

COMPONENTS = ["transformer", "vae", "text_encoder"]


@pytest.fixture(scope="module")
def pipe():
    return tiny_vidgen_pipeline()


@pytest.fixture(scope="module")
def saved(pipe, tmp_path_factory):
    return pipe.save_pretrained(tmp_path_factory.mktemp("good") / "model")


@pytest.fixture
def folder(saved, tmp_path):
    return shutil.copytree(saved, tmp_path / "model")


# ---- ways to break a file ------------------------------------------------------------------------------------------


def cut_in_half(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def random_bytes(path):
    path.write_bytes(random.Random(0).randbytes(path.stat().st_size))


def empty(path):
    path.write_bytes(b"")


def lfs_pointer(path):
    path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:" + "0" * 64 + "\nsize 328328\n")


def broken_header_json(path):
    data = bytearray(path.read_bytes())
    data[8] = ord("x")  # the header's opening "{" (after its 8-byte length)
    path.write_bytes(bytes(data))


def _first_matrix(state):
    return next(k for k in sorted(state) if state[k].ndim >= 2)


def _rewrite(path, edit):
    state = load_file(path)
    key = _first_matrix(state)
    edit(state, key)
    save_file(state, path, metadata={"format": "pt"})
    return key


def drop_tensor(path):
    return _rewrite(path, lambda s, k: s.pop(k))


def reshape_tensor(path):
    return _rewrite(path, lambda s, k: s.update({k: torch.zeros(s[k].shape[0] + 1, *s[k].shape[1:])}))


def integer_tensor(path):
    return _rewrite(path, lambda s, k: s.update({k: s[k].to(torch.int32)}))


HEADER_BREAKS = {cut_in_half: "truncated or corrupt", random_bytes: "truncated or corrupt", empty: "empty",
                 broken_header_json: "invalid JSON", lfs_pointer: "Git LFS pointer"}
TENSOR_BREAKS = {drop_tensor: "missing keys: {key}", reshape_tensor: "shape mismatches: {key}",
                 integer_tensor: "dtype mismatches: {key}"}


def assert_named(folder, path, says, tmp_path, capsys):
    """Loading fails with a ValueError naming `path` and holding `says`; the CLI prints that as one line, exit 2."""
    with pytest.raises(ValueError) as info:
        VideoPipeline.from_pretrained(folder, device="cpu")
    message = str(info.value)
    assert str(path) in message and says in message and "\n" not in message, message
    assert isinstance(info.value, WeightsError) and info.value.path == path
    capsys.readouterr()
    rc = main(["generate", "a red circle", "-o", str(tmp_path / "x.mp4"), "--model", str(folder), "--steps", "1",
               "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    assert len(err.splitlines()) == 1 and err.startswith("vidgen generate: error: "), err
    assert str(path) in err and says in err and "Traceback" not in err, err
    assert not (tmp_path / "x.mp4").exists()
    return message


# ---- each component of our folder ----------------------------------------------------------------------------------


@pytest.mark.parametrize("component", COMPONENTS)
@pytest.mark.parametrize("brk", list(HEADER_BREAKS), ids=lambda f: f.__name__)
def test_unreadable_weights_file_is_named(folder, component, brk, tmp_path, capsys):
    path = folder / component / "model.safetensors"
    brk(path)
    assert_named(folder, path, HEADER_BREAKS[brk], tmp_path, capsys)


@pytest.mark.parametrize("component", COMPONENTS)
@pytest.mark.parametrize("brk", list(TENSOR_BREAKS), ids=lambda f: f.__name__)
def test_missing_misshaped_or_integer_tensor_is_named(folder, component, brk, tmp_path, capsys):
    path = folder / component / "model.safetensors"
    key = brk(path)
    assert_named(folder, path, TENSOR_BREAKS[brk].format(key=key), tmp_path, capsys)


@pytest.mark.parametrize("name, brk, says", [
    ("tokenizer.json", cut_in_half, "not valid JSON"),
    ("tokenizer.json", random_bytes, "not valid JSON"),
    ("tokenizer.json", empty, "empty"),
    ("tokenizer.json", lambda p: p.write_text('{"model": {"type": "WordLevel"}}'), "cannot read tokenizer"),
    ("tokenizer_config.json", lambda p: p.write_text(p.read_text()[:40]), "not valid JSON"),
], ids=["tokenizer.json-cut", "tokenizer.json-random", "tokenizer.json-empty", "tokenizer.json-structure",
        "tokenizer_config.json-cut"])
def test_broken_tokenizer_file_is_named(folder, name, brk, says, tmp_path, capsys):
    path = folder / "tokenizer" / name
    brk(path)
    assert_named(folder, path, says, tmp_path, capsys)


def test_broken_sentencepiece_model_is_named(folder, tmp_path, capsys):
    spm = pytest.importorskip("sentencepiece")
    model = io.BytesIO()
    words = "a red blue circle square moves left right on the black background".split()
    spm.SentencePieceTrainer.train(sentence_iterator=iter([" ".join(words)] * 8), model_writer=model, vocab_size=24,
                                   pad_id=0, eos_id=1, unk_id=2, bos_id=-1, hard_vocab_limit=False, minloglevel=2)
    shutil.rmtree(folder / "tokenizer")
    (folder / "tokenizer").mkdir()
    (folder / "tokenizer" / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "T5Tokenizer", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>",
         "extra_ids": 0}))
    path = folder / "tokenizer" / "spiece.model"
    path.write_bytes(model.getvalue()[:len(model.getvalue()) // 2])
    assert_named(folder, path, "cannot read sentencepiece model", tmp_path, capsys)


def test_broken_config_json_is_named(folder, tmp_path, capsys):
    for component in COMPONENTS:
        path = folder / component / "config.json"
        good = path.read_text()
        path.write_text(good[:len(good) // 2])
        assert_named(folder, path, "not valid JSON", tmp_path, capsys)
        path.write_text(good)


# ---- the DiT's foreign layouts and shards --------------------------------------------------------------------------


def _transformer_as(folder, pipe, fmt):
    shutil.rmtree(folder / "transformer")
    save_dit(pipe.dit, folder / "transformer", fmt=fmt)
    return folder / "transformer" / "diffusion_pytorch_model.safetensors"


@pytest.mark.parametrize("fmt", ["diffusers", "wan"])
def test_foreign_dit_layouts_name_the_file(folder, pipe, fmt, tmp_path, capsys):
    path = _transformer_as(folder, pipe, fmt)
    cut_in_half(path)
    assert_named(folder, path, "truncated or corrupt", tmp_path, capsys)


def test_fused_piece_missing_or_misshaped_names_the_checkpoint_key(folder, pipe, tmp_path, capsys):
    path = _transformer_as(folder, pipe, "diffusers")
    good = load_file(path)
    # to_q, to_k and to_v fill one fused qkv parameter: a piece missing names itself.
    state = dict(good)
    state.pop("blocks.0.attn1.to_k.weight")
    save_file(state, path)
    assert_named(folder, path, "missing keys: blocks.0.self_attn.qkv.weight (needs blocks.0.attn1.to_k.weight)",
                 tmp_path, capsys)
    # A piece whose other dims differ cannot even be concatenated: a shape mismatch, not torch.cat's error.
    state = dict(good)
    state["blocks.0.attn1.to_k.weight"] = state["blocks.0.attn1.to_k.weight"][:, :-1].contiguous()
    save_file(state, path)
    assert_named(folder, path, "shape mismatches: blocks.0.self_attn.qkv.weight", tmp_path, capsys)


def _shard(folder, pipe):
    """Our DiT written as two shards and a diffusers-style index."""
    shutil.rmtree(folder / "transformer")
    save_dit(pipe.dit, folder / "transformer", fmt="diffusers")
    transformer = folder / "transformer"
    (transformer / "diffusion_pytorch_model.safetensors").unlink()
    state = {k: v.contiguous() for k, v in export_state_dict(pipe.dit, "diffusers").items()}
    keys = sorted(state)
    names = ["diffusion_pytorch_model-00001-of-00002.safetensors", "diffusion_pytorch_model-00002-of-00002.safetensors"]
    halves = [keys[:len(keys) // 2], keys[len(keys) // 2:]]
    for name, part in zip(names, halves):
        save_file({k: state[k] for k in part}, transformer / name, metadata={"format": "pt"})
    index = transformer / "diffusion_pytorch_model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": {k: n for n, part in zip(names, halves) for k in part}}))
    return index, [transformer / n for n in names]


def test_sharded_dit_names_the_shard_or_the_index(folder, pipe, tmp_path, capsys):
    index, shards = _shard(folder, pipe)
    VideoPipeline.from_pretrained(folder, device="cpu")  # the shards load as written
    good = shards[1].read_bytes()
    random_bytes(shards[1])
    assert_named(folder, shards[1], "truncated or corrupt", tmp_path, capsys)
    shards[1].write_bytes(good)
    key = drop_tensor(shards[1])
    assert key in assert_named(folder, index, "missing keys: ", tmp_path, capsys)
    index.write_text(index.read_text()[:30])
    assert_named(folder, index, "not valid JSON", tmp_path, capsys)


# ---- the text encoder's shards, the VAE's .pth file ----------------------------------------------------------------


def test_sharded_text_encoder_names_the_shard(folder, pipe, tmp_path, capsys):
    shutil.rmtree(folder / "text_encoder")
    pipe.text_encoder.model.save_pretrained(folder / "text_encoder", max_shard_size="20KB")
    shards = sorted((folder / "text_encoder").glob("model-*.safetensors"))
    assert len(shards) > 1
    cut_in_half(shards[-1])
    assert_named(folder, shards[-1], "truncated or corrupt", tmp_path, capsys)


@pytest.mark.parametrize("brk, says", [(cut_in_half, "truncated or corrupt"), (random_bytes, "truncated or corrupt"),
                                       (empty, "empty"), (lfs_pointer, "Git LFS pointer")],
                         ids=["cut", "random", "empty", "lfs-pointer"])
def test_broken_original_vae_checkpoint_is_named(pipe, tmp_path, brk, says):
    vae = pipe.vae
    path = tmp_path / "vae.pth"
    torch.save(ours_to_original(vae.state_dict(), vae.config), path)
    assert CausalVAE.from_pretrained(path, config=vae.config).config == vae.config  # the file loads as written
    brk(path)
    with pytest.raises(WeightsError, match=says) as info:
        CausalVAE.from_pretrained(path, config=vae.config)
    assert str(path) in str(info.value) and "\n" not in str(info.value) and info.value.path == path


def test_weights_error_survives_pickling(tmp_path):
    error = pickle.loads(pickle.dumps(WeightsError(tmp_path / "w.safetensors", "it is broken")))
    assert isinstance(error, ValueError) and error.path == tmp_path / "w.safetensors" and str(error) == "it is broken"
