"""A Hugging Face repository id resolves through huggingface_hub's cache (laid out here by hand: nothing is
downloaded); one that is neither a folder nor cached, with the hub unreachable, is one clear error."""

import shutil

import pytest
import torch

from tests.tiny_pipeline import tiny_vidgen_pipeline
from vidgen.pipeline import VideoPipeline

REPO = "tiny-org/tiny-vidgen"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # never reach the network in a test
    return cache


def _cache_repo(cache, folder):
    """The layout huggingface_hub writes: models--owner--name/{refs/main, snapshots/<commit>/...}."""
    repo = cache / f"models--{REPO.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    shutil.copytree(folder, repo / "snapshots" / COMMIT)
    return repo / "snapshots" / COMMIT


def test_a_cached_repository_id_loads_like_its_folder(hub_cache, tmp_path):
    pipe = tiny_vidgen_pipeline()
    snapshot = _cache_repo(hub_cache, pipe.save_pretrained(tmp_path / "saved"))
    loaded = VideoPipeline.from_pretrained(REPO, device="cpu", progress=False)
    a = pipe("a red circle", seed=1, progress=False, output_type="latent").frames
    assert torch.equal(loaded("a red circle", seed=1, progress=False, output_type="latent").frames, a)
    from vidgen.model_folder import read_model_folder

    assert read_model_folder(REPO)[0] == snapshot


def test_an_unknown_repository_offline_says_where_it_looked(hub_cache, tmp_path, monkeypatch, capsys):
    from vidgen import cli

    with pytest.raises(FileNotFoundError, match=r"nor a Hugging Face repository in the cache .*huggingface-cli "
                                                r"download someone/missing"):
        VideoPipeline.from_pretrained("someone/missing", progress=False)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["generate", "a red circle", "-o", "a.mp4", "--model", "someone/missing"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(hub_cache) in err and not (tmp_path / "a.mp4").exists()
