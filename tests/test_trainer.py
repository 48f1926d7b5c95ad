"""The trainer end to end on tiny CPU configs: loss falls, kill -9 + resume gives the same weights, bad input fails
early with clear errors, a latent cache trains a DiT that samples its one training clip back, the VAE trains."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.train_fixtures import media_folder, tiny_text_encoder
from vidgen.train.checkpoint import CheckpointError
from vidgen.train.config import TrainConfig
from vidgen.train.trainer import train

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models are all overhead: on a shared 2-core machine one thread is ~5x faster than two."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    return media_folder(tmp_path_factory.mktemp("media"), videos=3, images=2, size=(32, 32))


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory):
    return tiny_text_encoder(tmp_path_factory.mktemp("te") / "te")


def tiny(media, out, **over) -> dict:
    cfg = {
        "model": "tiny", "vae": "tiny", "output_dir": str(out), "max_steps": 8, "save_every": 2, "log_every": 4,
        "data": {"folder": str(media), "buckets": [[5, 32, 32], [1, 32, 32]], "batch_size": 2, "image_ratio": 0.25},
        "optim": {"lr": 3e-3, "warmup_steps": 2, "schedule": "cosine", "grad_accum": 2},
        "flow": {"context_sigma_max": 0.05, "text_dropout": 0.2},
        "ema_decay": 0.9,
    }
    for k, v in over.items():
        if isinstance(v, dict):
            cfg[k] = {**cfg.get(k, {}), **v}
        else:
            cfg[k] = v
    return cfg


@pytest.fixture(scope="module")
def cache(media, text_dir, tmp_path_factory):
    """Latents and text embeddings of `media`, precomputed once (the tiny VAE is slow on a busy 2-core machine)."""
    from vidgen.train.data import precompute_from_config

    cfg = TrainConfig.load(tiny(media, tmp_path_factory.mktemp("unused"), text_encoder=str(text_dir)))
    return precompute_from_config(cfg, tmp_path_factory.mktemp("cache") / "cache")


def cached(cache, out, **over) -> dict:
    cfg = tiny(cache, out, **over)
    cfg["data"] = {**cfg["data"], "folder": None, "cache": str(cache)}
    cfg.pop("vae")
    return cfg


def test_loss_falls_well_below_its_start(cache, tmp_path):
    cfg = TrainConfig.load(cached(cache, tmp_path, max_steps=40, save_every=40, log_every=10,
                                  optim={"grad_accum": 1, "schedule": "constant"}, flow={"text_dropout": 0.0}))
    result = train(cfg, progress=False)
    first, last = sum(result.losses[:5]) / 5, sum(result.losses[-10:]) / 10
    assert last < 0.6 * first, (first, last)
    assert (tmp_path / "metrics.jsonl").read_text().count("grad_norm") == 4


def test_raw_media_run_encodes_with_the_vae_and_exports(media, text_dir, tmp_path):
    cfg = tiny(media, tmp_path, text_encoder=str(text_dir), max_steps=3, save_every=3, sample_every=3,
               sample_prompts=["a red square moving right"], sample_steps=2, optim={"grad_accum": 1})
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg))
    from vidgen.cli import main

    assert main(["train", "--config", str(cfg_file), "--no-progress"]) == 0
    metrics = (tmp_path / "metrics.jsonl").read_text()
    assert '"bad_files": 1' in metrics  # the corrupt mp4 in the folder is counted
    (clip,) = (tmp_path / "samples").glob("*.mp4")
    from vidgen.video_io import read_video

    assert read_video(clip)[0].shape == (5, 32, 32, 3)
    assert (tmp_path / "checkpoints" / "step-00000003" / "ema.safetensors").is_file()
    # the run ends in a pipeline folder that generates with the trained weights and the run's size
    from vidgen import VideoPipeline

    pipe = VideoPipeline.from_pretrained(tmp_path / "final", device="cpu")
    frames = pipe("a red square moving right", num_inference_steps=2, seed=0, progress=False).frames
    assert frames.shape == (1, 5, 32, 32, 3)


def _weights(out: Path) -> dict[str, torch.Tensor]:
    (last,) = sorted((out / "checkpoints").glob("step-*"))[-1:]
    assert last.name == "step-00000008"
    return {f"{path.stem}/{k}": v for path in sorted(last.glob("*.safetensors"))
            for k, v in load_file(str(path)).items()}


@pytest.mark.slow
def test_killed_and_resumed_run_ends_with_the_same_weights(cache, text_dir, tmp_path):
    over = {"text_encoder": str(text_dir), "train_text_encoder": True}
    straight = train(TrainConfig.load(cached(cache, tmp_path / "straight", **over)), progress=False)
    assert straight.step == 8

    _kill_resume_and_compare(cached(cache, tmp_path / "killed", **over), tmp_path)
    # the jointly trained text encoder is exported in Wan's layout and loads back
    from vidgen.train.text_conditioner import TextConditioner

    assert TextConditioner.from_folder(tmp_path / "killed" / "final", 16)(["a red circle"]).shape == (1, 16, 24)
    assert (tmp_path / "killed" / "final" / "transformer" / "config.json").is_file()


def _kill_resume_and_compare(cfg: dict, tmp_path: Path) -> float:
    """Run `cfg` in a subprocess, kill -9 it after its step-4 checkpoint, resume it here to step 8, and compare its
    last checkpoint with the uninterrupted run's in tmp_path/straight: the largest difference (at most 1e-6)."""
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg))
    script = ("import sys, time, torch; torch.set_num_threads(1)\n"
              "from vidgen.train.config import TrainConfig\nfrom vidgen.train.trainer import train\n"
              "train(TrainConfig.load(sys.argv[1]), progress=False, on_step=lambda s: time.sleep(0.25))\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(cfg_file)], env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpts = Path(cfg["output_dir"]) / "checkpoints"
    deadline = time.time() + 120
    while not (ckpts / "step-00000004").exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (ckpts / "step-00000008").exists()  # it really died mid-way

    resumed = train(TrainConfig.load(cfg_file), resume=True, progress=False)
    assert resumed.step == 8 and len(resumed.losses) < 8
    a, b = _weights(tmp_path / "straight"), _weights(Path(cfg["output_dir"]))
    assert a.keys() == b.keys() and {k.split("/")[0] for k in a} >= {"model", "ema", "optimizer"}
    worst = max((a[k].double() - b[k].double()).abs().max().item() for k in a)
    assert worst <= 1e-6, worst
    return worst


@pytest.mark.slow
def test_killed_and_resumed_lora_run_ends_with_the_same_adapters(cache, text_dir, tmp_path):
    """Adapters only on a frozen base: checkpoints hold the adapters, their EMA and optimizer state, nothing of the
    base; kill -9 + --resume ends where the uninterrupted run does; the final export is one diffusers-layout file."""
    over = {"text_encoder": str(text_dir), "lora": {"rank": 2, "alpha": 4.0, "dropout": 0.1},
            "optim": {"lr": 1e-2}}
    straight = train(TrainConfig.load(cached(cache, tmp_path / "straight", **over)), progress=False)
    assert straight.step == 8 and straight.losses[0] != straight.losses[-1]
    ckpt = tmp_path / "straight" / "checkpoints" / "step-00000008"
    model = load_file(str(ckpt / "model.safetensors"))
    assert model and all(".lora_A." in k or ".lora_B." in k for k in model)
    assert any(v.abs().max() > 0 for k, v in model.items() if ".lora_B." in k)  # the adapters learned
    moments = load_file(str(ckpt / "optimizer.safetensors"))  # AdamW's step and two moments, per adapter weight only
    assert sorted(moments) == sorted(f"{i}.{k}" for i in range(len(model)) for k in ("exp_avg", "exp_avg_sq", "step"))
    assert sorted(load_file(str(ckpt / "ema.safetensors"))) == sorted(model)
    assert _kill_resume_and_compare(cached(cache, tmp_path / "killed", **over), tmp_path) == 0.0  # bit-identical
    final = sorted(p.name for p in (tmp_path / "killed" / "final").iterdir())
    assert final == ["lora.safetensors"]
    assert all(k.startswith("transformer.blocks.") for k in load_file(str(tmp_path / "killed" / "final" / final[0])))


def test_resumed_run_logs_each_step_once(cache, tmp_path):
    cfg = TrainConfig.load(cached(cache, tmp_path, save_every=4, log_every=2))
    train(cfg, progress=False)
    metrics = tmp_path / "metrics.jsonl"
    steps = lambda: [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert steps() == [2, 4, 6, 8]
    # as if killed after logging step 8 (and half a line of step 10) but before its checkpoint was written
    shutil.rmtree(tmp_path / "checkpoints" / "step-00000008")
    with metrics.open("a") as f:
        f.write('{"step": 10, "lo')
    train(cfg, resume=True, progress=False)
    assert steps() == [2, 4, 6, 8]


def test_cli_reports_bad_config_without_traceback(media, tmp_path, capsys):
    from vidgen.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**tiny(media, tmp_path), "optimiser": {}}))
    assert main(["train", "--config", str(bad)]) == 2
    assert "unknown key(s) ['optimiser']" in capsys.readouterr().err


def test_bad_input_fails_before_training(media, tmp_path):
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['learning_rate'\]"):
        TrainConfig.load({**tiny(media, tmp_path), "learning_rate": 1})
    with pytest.raises(ValueError, match="exactly one of folder, manifest, cache or shapes"):
        TrainConfig.load({**tiny(media, tmp_path), "data": {"folder": "a", "manifest": "b"}})
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "x.mp4").write_bytes(b"junk")
    with pytest.raises(ValueError, match="no usable media files"):
        train(TrainConfig.load(tiny(empty, tmp_path / "o1")), progress=False)
    with pytest.raises(ValueError, match="multiples of 16"):
        train(TrainConfig.load(tiny(media, tmp_path / "o2", data={"buckets": [[5, 24, 24]]})), progress=False)
    with pytest.raises(ValueError, match=r"1 \+ 4k"):
        train(TrainConfig.load(tiny(media, tmp_path / "o3", data={"buckets": [[6, 32, 32]]})), progress=False)
    assert not list(tmp_path.glob("o*/checkpoints/*"))


def test_checkpoint_from_another_config_is_a_clear_error(media, tmp_path):
    train(TrainConfig.load(tiny(media, tmp_path, max_steps=2)), progress=False)
    with pytest.raises(FileExistsError, match="--resume"):
        train(TrainConfig.load(tiny(media, tmp_path, max_steps=2)), progress=False)
    other = TrainConfig.load(tiny(media, tmp_path, max_steps=4, optim={"lr": 1e-3}))
    with pytest.raises(CheckpointError, match=r"optim.lr: 0.003 \(checkpoint\) vs 0.001 \(now\)"):
        train(other, resume=True, progress=False)


def test_resume_accepts_a_key_added_to_the_config_schema_at_its_absent_value(media, tmp_path):
    """A checkpoint from before a new config key existed (its value the default now) resumes; a real change fails."""
    from vidgen.train.trainer import _check_resumable
    from vidgen.train.config import learning_dict

    config = TrainConfig.load(tiny(media, tmp_path))
    old = {k: v for k, v in learning_dict(config).items() if v is not None}
    assert len(old) < len(learning_dict(config))  # the config has keys at None to drop
    _check_resumable(tmp_path, {"config_hash": "from-an-older-schema", "learning_config": old}, config)
    old["optim.lr"] = 0.5
    with pytest.raises(CheckpointError, match=r"optim.lr: 0.5 \(checkpoint\)"):
        _check_resumable(tmp_path, {"config_hash": "from-an-older-schema", "learning_config": old}, config)
    # a key added with a non-None default (the VAE's adversarial term: 0.0, off): absent means that default
    vae = TrainConfig.load(tiny(media, tmp_path, task="vae"))
    before = {k: v for k, v in learning_dict(vae).items() if not k.startswith("vae_loss.adv")}
    _check_resumable(tmp_path, {"config_hash": "from-an-older-schema", "learning_config": before}, vae)
    on = TrainConfig.load(tiny(media, tmp_path, task="vae", vae_loss={"adversarial_weight": 0.1}))
    with pytest.raises(CheckpointError, match=r"vae_loss.adversarial_weight: 0.0 \(checkpoint\) vs 0.1 \(now\)"):
        _check_resumable(tmp_path, {"config_hash": "from-an-older-schema", "learning_config": before}, on)


def test_resume_with_a_new_schedule_only_if_the_past_lr_is_the_same(media, tmp_path):
    """A constant-LR run may go on as "wsd" (annealed at the end) from any step before its decay; cosine may not."""
    from vidgen.train.trainer import _check_resumable
    from vidgen.train.config import learning_dict

    constant = TrainConfig.load(tiny(media, tmp_path, max_steps=100, optim={"schedule": "constant"}))
    state = {"config_hash": "constant", "learning_config": learning_dict(constant), "step": 60}
    wsd = TrainConfig.load(tiny(media, tmp_path, max_steps=100, optim={"schedule": "wsd", "decay_steps": 40}))
    _check_resumable(tmp_path, state, wsd)  # decay starts at step 60: steps 0..59 had the same LR
    early = TrainConfig.load(tiny(media, tmp_path, max_steps=100, optim={"schedule": "wsd", "decay_steps": 41}))
    with pytest.raises(CheckpointError, match="optim.schedule: 'constant'"):
        _check_resumable(tmp_path, state, early)  # step 59 would have had a lower LR
    cosine = TrainConfig.load(tiny(media, tmp_path, max_steps=100, optim={"schedule": "cosine"}))
    with pytest.raises(CheckpointError, match="optim.schedule"):
        _check_resumable(tmp_path, state, cosine)
    other = TrainConfig.load(tiny(media, tmp_path, max_steps=100, optim={"schedule": "wsd", "decay_steps": 40,
                                                                          "lr": 1e-3}))
    with pytest.raises(CheckpointError, match="optim.lr"):
        _check_resumable(tmp_path, state, other)  # a schedule change does not excuse another change
    with pytest.raises(ValueError, match="decay_steps"):
        TrainConfig.load(tiny(media, tmp_path, optim={"schedule": "wsd"}))


def _unit_latent_vae(video: torch.Tensor):
    """The tiny VAE with latent statistics set from `video`, so its normalised latents have unit scale (a random
    VAE's raw latents are nearly constant, which would make any sample look close)."""
    import dataclasses

    from causal_vae import CausalVAE
    from causal_vae.config import preset

    torch.manual_seed(0)
    raw = CausalVAE(preset("tiny")).eval()
    with torch.no_grad():
        mu = raw.posterior(video)[0]
    cfg = dataclasses.replace(preset("tiny"), latents_mean=tuple(mu.mean(dim=(0, 2, 3, 4)).tolist()),
                              latents_std=tuple(mu.std(dim=(0, 2, 3, 4)).tolist()))
    vae = CausalVAE(cfg)
    vae.load_state_dict(raw.state_dict())  # the statistics are config, not weights
    return vae.eval()


def test_latent_cache_overfits_one_clip_and_samples_it_back(media, text_dir, tmp_path):
    from vidgen.data.buckets import SampleKey
    from vidgen.data.latent_cache import LatentCache
    from vidgen.flow import sigma_schedule, to_timestep
    from vidgen.samplers import sample_euler
    from vidgen.train.data import precompute_from_config
    from vidgen.train.models import load_dit

    one = tmp_path / "one"
    one.mkdir()
    for ext in (".mp4", ".txt"):
        (one / f"clip0{ext}").write_bytes((media / f"clip0{ext}").read_bytes())
    base = tiny(one, tmp_path / "run", text_encoder=str(text_dir), max_steps=200, save_every=200, log_every=50,
                data={"image_ratio": 0.0, "batch_size": 4, "buckets": [[5, 32, 32]]},
                optim={"lr": 1e-2, "warmup_steps": 10, "grad_accum": 1, "schedule": "constant"},
                flow={"text_dropout": 0.0, "sigma_sampler": "uniform", "context_sigma_max": 0.0,
                      "prefix_probs": [1.0, 0.0, 0.0]}, ema_decay=0.0)
    from vidgen.data.dataset import MediaDataset, build_index
    from vidgen.data.buckets import validate_buckets
    from vidgen.data.sources import scan_folder

    buckets = validate_buckets([(5, 32, 32)])
    clip = MediaDataset(build_index(scan_folder(one), buckets), buckets)[SampleKey(0, 0, 0)]["video"][None]
    vae = _unit_latent_vae(clip)
    cache = precompute_from_config(TrainConfig.load(base), tmp_path / "cache", models={"vae": vae})
    data = LatentCache(cache)
    assert len(data) == 1 and data.buckets[0].frames == 2
    sample = data[SampleKey(0, 0, 0)]
    assert sample["context"].shape == (16, 24) and sample["caption"] == "a red square moving right"
    x0, ctx = sample["latent"][None], sample["context"][None]
    torch.testing.assert_close(x0, vae.encode(clip), atol=1e-5, rtol=0)

    base["data"] = {"cache": str(cache), "buckets": [[5, 32, 32]], "batch_size": 4}
    base.pop("vae")
    torch.manual_seed(0)
    dit = load_dit("tiny")

    def sample_error() -> float:
        dit.eval()
        with torch.no_grad():
            noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
            z = sample_euler(lambda x, s: dit(x, to_timestep(s), ctx), noise, sigma_schedule(20))
        dit.train()
        return ((z - x0).norm() / x0.norm()).item()

    before = sample_error()
    result = train(TrainConfig.load(base), models={"dit": dit}, progress=False)
    assert sum(result.losses[-10:]) / 10 < 0.25 * sum(result.losses[:5]) / 5
    after = sample_error()
    assert after < 0.35 and after < before / 3, (before, after)


def train_loader_videos(cfg):
    from vidgen.train.data import build_data, loader

    for batch in loader(build_data(cfg, (4, 8)), 0, 0):
        yield batch["video"]


def test_vae_trains_on_the_same_data(media, tmp_path):
    cfg = TrainConfig.load(tiny(media, tmp_path, task="vae", max_steps=12, save_every=12, log_every=6,
                                data={"buckets": [[5, 16, 16], [1, 16, 16]]},
                                optim={"lr": 3e-3, "grad_accum": 1, "schedule": "constant", "warmup_steps": 0},
                                ema_decay=0.0))
    result = train(cfg, progress=False)
    assert sum(result.losses[-4:]) / 4 < 0.7 * sum(result.losses[:3]) / 3, result.losses
    from causal_vae import CausalVAE

    vae = CausalVAE.from_pretrained(tmp_path / "final" / "vae")  # with latent statistics measured on the data
    video = next(iter(train_loader_videos(cfg)))
    z = vae.encode(video)
    assert abs(z.mean().item()) < 0.5 and 0.3 < z.std().item() < 2.0, (z.mean(), z.std())
    assert (tmp_path / "checkpoints" / "step-00000012" / "model.safetensors").is_file()


def test_bf16_and_gradient_checkpointing_train(cache, text_dir, tmp_path):
    cfg = cached(cache, tmp_path, max_steps=3, save_every=3, mixed_precision="bf16", gradient_checkpointing=True,
                 optim={"grad_accum": 1}, sample_every=3, sample_prompts=["a red circle"], sample_steps=2)
    cfg.update(vae="tiny", text_encoder=str(text_dir))  # only for the preview: training reads the cache
    result = train(TrainConfig.load(cfg), progress=False)
    assert result.step == 3 and all(0 < l < 10 for l in result.losses)
    assert len(list((tmp_path / "samples").glob("step00000003-0.mp4"))) == 1
    # weights and EMA stay fp32 masters; autocast runs the matmuls in bf16
    weights = load_file(str(tmp_path / "checkpoints" / "step-00000003" / "model.safetensors"))
    assert all(v.dtype == torch.float32 for v in weights.values())


def test_bf16_lora_keeps_a_bf16_base_and_fp32_adapters(cache, tmp_path):
    cfg = cached(cache, tmp_path, max_steps=2, save_every=2, mixed_precision="bf16", gradient_checkpointing=True,
                 optim={"grad_accum": 1}, ema_decay=0.0, lora={"rank": 2, "target_modules": ["cross_attn.kv"]})
    result = train(TrainConfig.load(cfg), progress=False)
    assert result.step == 2 and all(0 < l < 10 for l in result.losses)
    adapters = load_file(str(tmp_path / "checkpoints" / "step-00000002" / "model.safetensors"))
    assert sorted({k.split(".")[2] + "." + k.split(".")[3] for k in adapters}) == ["cross_attn.kv"]
    assert all(v.dtype == torch.float32 for v in adapters.values())
    exported = load_file(str(tmp_path / "final" / "lora.safetensors"))  # the diffusers layout: kv split in two
    assert {k.split(".", 3)[3] for k in exported} == {f"attn2.to_{p}.lora_{x}.weight" for p in "kv" for x in "AB"}
    assert all(v.shape[0] == 2 for k, v in exported.items() if "lora_A" in k)  # rank 2


def test_lora_config_errors_name_the_fix(media, tmp_path):
    with pytest.raises(ValueError, match="lora applies to task dit only"):
        TrainConfig.load({**tiny(media, tmp_path), "task": "vae", "lora": {}})
    with pytest.raises(ValueError, match="train_text_encoder: false"):
        TrainConfig.load({**tiny(media, tmp_path), "train_text_encoder": True, "lora": {"rank": 4}})
    with pytest.raises(ValueError, match="lora.rank must be"):
        TrainConfig.load({**tiny(media, tmp_path), "lora": {"rank": 0}})
    with pytest.raises(ValueError, match="shapes_extra_fraction"):
        TrainConfig.load({**tiny(media, tmp_path), "data": {"folder": str(media), "shapes_extra_colours": ["orange"]}})


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "train").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_training_configs_load(path):
    cfg = TrainConfig.load(path)
    assert cfg.data.buckets


@pytest.mark.distributed
def test_two_process_ddp_run_on_cpu(cache, tmp_path):
    """`accelerate launch` with 2 CPU processes (gloo): each rank draws its own batches, gradients are all-reduced."""
    cfg_file = tmp_path / "ddp.yaml"
    cfg_file.write_text(yaml.safe_dump(cached(cache, tmp_path / "out", max_steps=3, save_every=3, log_every=1)))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    proc = subprocess.run([*launcher, "-m", "vidgen", "train", "--config", str(cfg_file), "--no-progress"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "out" / "checkpoints" / "step-00000003" / "manifest.json").is_file()
    assert (tmp_path / "out" / "metrics.jsonl").read_text().count("\n") == 3  # rank 0 alone writes the log
