"""The shapes recipe end to end on a minuscule config: every stage runs, resumes, and leaves a loadable pipeline."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vidgen.config_io import to_dict
from vidgen_lab.shapes_recipe import ShapesRecipe, run_stages

Z = [0.0] * 4
TINY = {
    "seed": 3, "train_clips": 6, "frames": 5, "size": 32, "stats_clips": 4,
    "vae_model": {"base_dim": 4, "z_dim": 4, "dim_mult": [1, 2, 2, 2], "num_res_blocks": 1,
                  "latents_mean": Z, "latents_std": [1.0] * 4},
    "dit_model": {"dim": 32, "ffn_dim": 64, "num_heads": 2, "num_layers": 1, "in_dim": 4, "out_dim": 4,
                  "text_dim": 32, "freq_dim": 32, "text_len": 16},
    "text_encoder": {"d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 1, "num_heads": 4},
    "defaults": {"num_frames": 5, "height": 32, "width": 32, "num_inference_steps": 2, "guidance_scale": 2.0,
                 "shift": 2.0, "fps": 8},
    "vae_images_train": {"task": "vae", "data": {"folder": "x", "batch_size": 2}, "max_steps": 1, "save_every": 1,
                         "log_every": 1},
    "vae_train": {"task": "vae", "data": {"folder": "x", "buckets": [[1, 32, 32], [5, 32, 32]], "image_ratio": 0.5,
                                          "images_from_videos": True, "batch_size": 2},
                  "max_steps": 2, "save_every": 1, "log_every": 1, "ema_decay": 0.9},
    "decoder_train": {"task": "vae", "data": {"folder": "x", "buckets": [[5, 32, 32]], "batch_size": 2},
                      "optim": {"lr": 1.0e-2}, "max_steps": 2, "save_every": 1, "log_every": 1},
    "dit_train": {"task": "dit", "data": {"cache": "x", "image_ratio": 0.5, "batch_size": 2},
                  "max_steps": 2, "save_every": 1, "log_every": 1, "ema_decay": 0.9},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe")
    recipe = ShapesRecipe.load(TINY).with_run_dir(root / "run")
    run_stages(recipe, ["data", "vae", "latents", "dit", "decoder", "export"], export_to=root / "model",
               progress=False)
    return recipe, root


def test_decoder_stage_keeps_the_latent_space_and_export_ships_its_decoder(trained):
    from causal_vae import CausalVAE

    recipe, root = trained
    before = CausalVAE.from_pretrained(recipe.root / "vae_normalized")
    after = CausalVAE.from_pretrained(recipe.root / "decoder" / "final" / "vae")
    shipped = CausalVAE.from_pretrained(root / "model" / "vae")
    assert after.config == before.config  # the latent statistics the DiT was trained with
    a, b, c = before.state_dict(), after.state_dict(), shipped.state_dict()
    for name in a:
        if name.startswith(("encoder.", "quant_conv.")):
            assert torch.equal(a[name], b[name]), name
    assert any(not torch.equal(a[n], b[n]) for n in a if n.startswith("decoder."))
    assert all(torch.equal(b[n], c[n]) for n in b)


def test_stages_leave_a_loadable_pipeline_with_the_recipe_defaults(trained):
    from vidgen import VideoPipeline

    recipe, root = trained
    saved = json.loads((root / "model" / "vidgen_pipeline.json").read_text())
    assert saved == to_dict(recipe.defaults)
    pipe = VideoPipeline.from_pretrained(root / "model")
    out = pipe("a red circle moving right on a black background", seed=0, progress=False)
    assert out.frames.shape == (1, 5, 32, 32, 3)
    image = pipe("a blue square moving up on a white background", num_frames=1, seed=0, progress=False)
    assert image.frames.shape == (1, 1, 32, 32, 3)


def test_latent_statistics_are_stored_in_the_vae(trained):
    from causal_vae import CausalVAE

    recipe, _ = trained
    vae = CausalVAE.from_pretrained(recipe.root / "vae_normalized")
    assert vae.config.latents_mean != tuple(Z)
    assert all(s > 0 for s in vae.config.latents_std)
    # Normalised latents of the training world are roughly standard per channel.
    from vidgen.shapes.dataset import ShapesDataset

    video = torch.stack([ShapesDataset(4, seed=recipe.seed + 1_000_003, frames=5, size=32)[i]["video"]
                         for i in range(4)])
    z = vae.encode(video).transpose(0, 1).flatten(1)
    assert torch.allclose(z.mean(1), torch.zeros(4), atol=1e-3)
    assert torch.allclose(z.std(1), torch.ones(4), atol=1e-2)


def test_rerunning_resumes_instead_of_redoing(trained):
    recipe, root = trained
    steps = sorted(p.name for p in (recipe.root / "dit" / "checkpoints").iterdir())
    stamp = (recipe.root / "latents" / "index.json").stat().st_mtime_ns
    run_stages(recipe, ["latents", "dit"], export_to=root / "model", max_steps=3, progress=False)
    assert (recipe.root / "latents" / "index.json").stat().st_mtime_ns == stamp  # not recomputed
    after = sorted(p.name for p in (recipe.root / "dit" / "checkpoints").iterdir())
    assert after[-1] == "step-00000003" and steps[-1] == "step-00000002"


def test_export_from_a_checkpoint_uses_its_ema_weights(trained, tmp_path):
    from vidgen_lab.shapes_recipe import load_trained_dit
    from vidgen.train import checkpoint as ckpt

    recipe, _ = trained
    dit, source = load_trained_dit(recipe, from_checkpoint=True)
    latest = ckpt.CheckpointManager(recipe.root / "dit" / "checkpoints").latest()
    ema = ckpt.load(latest)[0]["ema"]
    assert "ema" in source
    for name, p in dit.named_parameters():
        assert torch.equal(p.detach(), ema[name])


def test_recipe_rejects_mismatched_widths():
    bad = {**TINY, "text_encoder": {**TINY["text_encoder"], "d_model": 48}}
    with pytest.raises(ValueError, match="text_dim"):
        ShapesRecipe.load(bad)
    assert np.isfinite(ShapesRecipe.load(TINY).defaults.shift)


def test_evaluation_runs_on_the_recipes_model(trained):
    from vidgen import VideoPipeline
    from vidgen_lab.shapes_eval import EvalConfig, evaluate, to_markdown

    _, root = trained
    pipe = VideoPipeline.from_pretrained(root / "model")
    cfg = EvalConfig(seen_clips=2, heldout_clips=2, images=2, vae_clips=1, roundtrip_clips=3, f2v_clips=1,
                     long_videos=1, long_segments=2, batch_size=2)
    result = evaluate(pipe, cfg, ("t2v", "t2i", "vae", "roundtrip", "f2v"))  # 5-frame windows are too short to chain
    assert set(result.t2v) == {"train", "heldout"} and result.t2v["train"]["n"] == 2
    assert result.vae_psnr > 0 and result.f2v["n"] == 1
    assert set(result.roundtrip) == {"circle", "square", "triangle", "n"} and result.roundtrip["n"] == 3
    table = to_markdown(result, "tiny")
    assert "held-out" in table and "VAE reconstruction PSNR" in table


def test_export_uses_the_final_dit_once_training_has_finished(trained):
    from vidgen.dit.model import DiT
    from vidgen_lab.shapes_recipe import load_trained_dit

    recipe, _ = trained
    dit, source = load_trained_dit(recipe)
    assert source.endswith("final/transformer"), source
    final = DiT.from_pretrained(recipe.root / "dit" / "final" / "transformer")
    assert all(torch.equal(a, b) for a, b in zip(dit.state_dict().values(), final.state_dict().values()))


def test_continuations_start_from_the_previous_runs_and_are_what_export_ships(tmp_path):
    from causal_vae import CausalVAE
    from vidgen.dit.model import DiT
    from vidgen_lab.shapes_recipe import load_trained_dit, trained_vae_folder

    first_runs = ShapesRecipe.load(TINY).with_run_dir(tmp_path / "run")
    run_stages(first_runs, ["data", "vae", "latents", "dit", "decoder"], export_to=tmp_path / "unused", progress=False)
    # A near-zero LR: each continued run's final (EMA) weights must then be the first run's final weights.
    tiny_lr = {"lr": 1.0e-12, "warmup_steps": 0}
    more = {**TINY,
            "dit_continue_train": [{**TINY["dit_train"], "optim": tiny_lr, "max_steps": 1}] * 2,
            "decoder_continue_train": [{**TINY["decoder_train"], "optim": tiny_lr, "max_steps": 1}]}
    cont = ShapesRecipe.load(more).with_run_dir(tmp_path / "run")
    assert [cont.dit_train_config(run=k).seed for k in range(3)] == [3, 4, 5]
    assert cont.dit_train_config(run=2).model == str(cont.root / "dit_continued" / "final" / "transformer")
    with pytest.raises(ValueError, match="no run 3"):
        cont.dit_train_config(run=3)
    assert load_trained_dit(cont)[1].endswith("dit/final/transformer")  # nothing continued yet: the first run
    assert trained_vae_folder(cont) == cont.root / "decoder" / "final" / "vae"
    run_stages(cont, ["dit", "decoder", "export"], export_to=tmp_path / "model", progress=False)

    dit, source = load_trained_dit(cont)
    assert source.endswith("dit_continued_2/final/transformer"), source
    first = DiT.from_pretrained(cont.root / "dit" / "final" / "transformer").state_dict()
    init = DiT.from_pretrained(cont.root / "dit_init").state_dict()
    got = dit.state_dict()
    assert all(torch.allclose(got[n], first[n], atol=1e-6) for n in got)
    assert any(not torch.allclose(got[n], init[n], atol=1e-6) for n in got)

    assert trained_vae_folder(cont) == cont.root / "decoder_continued" / "final" / "vae"
    a = CausalVAE.from_pretrained(cont.root / "decoder" / "final" / "vae").state_dict()
    b = CausalVAE.from_pretrained(tmp_path / "model" / "vae").state_dict()
    assert all(torch.allclose(a[n], b[n], atol=1e-6) for n in a)


def test_the_decoder_stage_without_a_decoder_section_says_so(tmp_path):
    recipe = ShapesRecipe.load({k: v for k, v in TINY.items() if k != "decoder_train"}).with_run_dir(tmp_path)
    (tmp_path / "vae_normalized").mkdir()
    with pytest.raises(ValueError, match="no decoder_train section"):
        run_stages(recipe, ["decoder"], export_to=tmp_path / "model", progress=False)


def test_a_decoder_continuation_needs_the_first_decoder_run():
    bad = {k: v for k, v in TINY.items() if k != "decoder_train"}
    bad["decoder_continue_train"] = [TINY["decoder_train"]]
    with pytest.raises(ValueError, match="decoder_train"):
        ShapesRecipe.load(bad)


def test_later_dit_runs_can_train_on_more_clips_rendered_on_the_fly(tmp_path):
    from vidgen.shapes.world import all_captions

    more = {**TINY, "more_clips": 5, "more_clips_from_run": 1, "more_clips_partial_captions": 0,
            "dit_continue_train": [{**TINY["dit_train"], "max_steps": 1}]}
    recipe = ShapesRecipe.load(more).with_run_dir(tmp_path / "run")
    assert [recipe.dit_train_config(run=k).data.cache for k in range(2)] == [
        str(recipe.root / "latents"), str(recipe.root / "latents_more")]
    run_stages(recipe, ["data", "vae", "latents", "dit"], export_to=tmp_path / "unused", progress=False)
    index = json.loads((recipe.root / "latents_more" / "index.json").read_text())
    assert len(index["samples"]) == 5
    first = {s["caption"] for s in json.loads((recipe.root / "latents" / "index.json").read_text())["samples"]}
    captions = {s["caption"] for s in index["samples"]}
    assert captions != first and not captions & set(all_captions("heldout"))  # other clips (seed + 1), train split
    assert (recipe.root / "dit_continued" / "final" / "transformer").is_dir()
    plain = {k: v for k, v in more.items() if not k.startswith("more_clips")}
    for bad in ({"more_clips": 5}, {"more_clips_from_run": 1}, {"more_clips": 5, "more_clips_from_run": 2},
                {"more_clips": [5, 4], "more_clips_from_run": [1]}, {"more_clips": [5, 0], "more_clips_from_run": [0, 1]},
                {"more_clips": [5, 4], "more_clips_from_run": [1, 1]}, {"more_clips": "5", "more_clips_from_run": 1}):
        with pytest.raises(ValueError, match="more_clips"):
            ShapesRecipe.load({**plain, **bad})


def test_a_second_set_of_more_clips_serves_the_runs_from_its_own_on(tmp_path):
    run = {**TINY["dit_train"], "max_steps": 1}
    from vidgen.shapes.world import all_captions

    sets = {**TINY, "more_clips": [5, 4], "more_clips_from_run": [1, 2], "dit_continue_train": [run, run, run],
            "more_clips_partial_captions": [0.0, 1.0]}  # the second set's captions all leave an attribute out
    recipe = ShapesRecipe.load(sets).with_run_dir(tmp_path / "run")
    assert recipe.more_clip_sets == ((5, 4), (1, 2), (0.0, 1.0))
    assert [recipe.more_media_config(j).data.partial_captions for j in range(2)] == [0.0, 1.0]
    assert [Path(recipe.dit_train_config(run=k).data.cache).name for k in range(4)] == [
        "latents", "latents_more", "latents_more_2", "latents_more_2"]
    assert [recipe.more_media_config(j).seed for j in range(2)] == [recipe.seed + 1, recipe.seed + 2]
    run_stages(recipe, ["data", "vae", "latents"], export_to=tmp_path / "unused", progress=False)
    first, second = (json.loads((recipe.root / name / "index.json").read_text())["samples"]
                     for name in ("latents_more", "latents_more_2"))
    assert (len(first), len(second)) == (5, 4)
    assert [s["caption"] for s in first] != [s["caption"] for s in second]  # other clips: seed + 2
    assert all(s["caption"] in all_captions("train") for s in first)
    assert not any(s["caption"] in all_captions() for s in second)
    for bad in ([0.5], [0.0, 1.5], None, [0.0, "0.5"], [0.0, True]):
        with pytest.raises(ValueError, match="more_clips_partial_captions"):
            ShapesRecipe.load({**sets, "more_clips_partial_captions": bad})
    # Adding a set to a loaded recipe names its caption fraction too, like its start run.
    with pytest.raises(ValueError, match="more_clips_partial_captions"):
        dataclasses.replace(recipe, more_clips=(5, 4, 3), more_clips_from_run=(1, 2, 3))
    added = dataclasses.replace(recipe, more_clips=(5, 4, 3), more_clips_from_run=(1, 2, 3),
                                more_clips_partial_captions=(0.0, 1.0, 0.4))
    assert [added.more_media_config(j).data.partial_captions for j in range(3)] == [0.0, 1.0, 0.4]
    # The scalar form is the one-set list; a count of 0 without a start run means no set.
    one = ShapesRecipe.load({**TINY, "more_clips": 5, "more_clips_from_run": 0, "more_clips_partial_captions": 0.5})
    assert one.more_clip_sets == ((5,), (0,), (0.5,)) and one.dit_latents(0) == "latents_more"
    assert ShapesRecipe.load({**TINY, "more_clips": 0}).more_clip_sets == ((), (), ())


def test_a_run_dir_seeded_from_a_saved_model_trains_only_the_later_runs(trained, tmp_path):
    from safetensors.torch import load_file

    from vidgen_lab.shapes_recipe import runs_to_train, seed_from_model

    _, root = trained  # root / "model": the exported pipeline of a one-run recipe
    run = {**TINY["dit_train"], "max_steps": 1}
    two = {**TINY, "more_clips": 3, "more_clips_from_run": 1, "more_clips_partial_captions": 0,
           "dit_continue_train": [run]}
    recipe = ShapesRecipe.load(two).with_run_dir(tmp_path / "run")
    for bad_run in (-1, 2):  # the recipe has runs 0 and 1
        with pytest.raises(ValueError, match="dit_run"):
            seed_from_model(recipe, root / "model", bad_run)
    with pytest.raises(FileNotFoundError, match="transformer"):
        seed_from_model(recipe, root / "run", 0)  # a run folder, not a saved pipeline
    seed_from_model(recipe, root / "model", 0)
    assert runs_to_train(recipe, "dit") == [1] and runs_to_train(recipe, "decoder") == [0]
    run_stages(recipe, ["latents", "dit", "export"], export_to=tmp_path / "model", progress=False)
    # Only the second run's cache was computed (there are no training clips here), and only it was trained.
    assert (recipe.root / "latents_more").is_dir() and not (recipe.root / "latents").exists()
    assert not (recipe.root / "data").exists() and not (recipe.root / "dit" / "checkpoints").exists()
    given = load_file(root / "model" / "transformer" / "model.safetensors")
    assert all(torch.equal(v, load_file(recipe.root / "dit" / "final" / "transformer" / "model.safetensors")[k])
               for k, v in given.items())
    assert recipe.dit_train_config(1).model == str(recipe.root / "dit" / "final" / "transformer")
    shipped = load_file(tmp_path / "model" / "transformer" / "model.safetensors")
    assert any(not torch.equal(v, shipped[k]) for k, v in given.items())  # the export is the trained second run
    for name in ("vae", "text_encoder"):  # the seeded VAE and text encoder travel on unchanged
        a, b = (load_file(f / name / "model.safetensors") for f in (root / "model", tmp_path / "model"))
        assert all(torch.equal(v, b[k]) for k, v in a.items())
    with pytest.raises(FileExistsError, match="replaces nothing"):
        seed_from_model(recipe, root / "model", 0)


def test_a_seeded_decoder_run_is_continued_on_clips_of_the_whole_world(trained, tmp_path):
    from causal_vae import CausalVAE

    from vidgen_lab.shapes_recipe import runs_to_train, seed_from_model, stage_decoder

    _, root = trained
    world = {"task": "vae", "data": {"shapes": 4, "shapes_split": "all", "buckets": [[5, 32, 32]], "batch_size": 2},
             "optim": {"lr": 1.0e-2}, "max_steps": 1, "save_every": 1, "log_every": 1}
    two = {**TINY, "dit_continue_train": [{**TINY["dit_train"], "max_steps": 1}], "decoder_continue_train": [world]}
    recipe = ShapesRecipe.load(two).with_run_dir(tmp_path / "run")
    with pytest.raises(ValueError, match="decoder_run"):
        seed_from_model(recipe, root / "model", 0, decoder_run=2)  # the recipe has decoder runs 0 and 1
    seed_from_model(recipe, root / "model", 1, decoder_run=0)  # the last DiT run: the dit stage has nothing to do
    assert runs_to_train(recipe, "dit") == []
    assert runs_to_train(recipe, "decoder") == [1]
    config = recipe.decoder_train_config(1)  # rendered on the fly, not the data stage's clips (there are none)
    assert (config.data.shapes, config.data.shapes_split, config.data.folder) == (4, "all", None)
    assert config.vae == str(recipe.root / "decoder" / "final" / "vae")
    run_stages(recipe, ["dit", "decoder", "export"], export_to=tmp_path / "model", progress=False)
    assert not (recipe.root / "decoder" / "checkpoints").exists() and not (recipe.root / "data").exists()
    assert not (recipe.root / "dit_continued" / "checkpoints").exists()
    given = CausalVAE.from_pretrained(root / "model" / "vae").state_dict()
    shipped = CausalVAE.from_pretrained(tmp_path / "model" / "vae").state_dict()
    assert all(torch.equal(v, shipped[k]) for k, v in given.items() if k.startswith(("encoder.", "quant_conv.")))
    assert any(not torch.equal(v, shipped[k]) for k, v in given.items() if k.startswith("decoder."))
    last = recipe.with_run_dir(tmp_path / "last")  # every decoder run seeded: the stage trains nothing
    seed_from_model(last, root / "model", 1, decoder_run=1)
    assert runs_to_train(last, "decoder") == []
    assert stage_decoder(last, progress=False) == last.root / "decoder_continued" / "final" / "vae"
    assert not any((last.root / name / "checkpoints").exists() for name in ("decoder", "decoder_continued"))
    (tmp_path / "other" / "decoder").mkdir(parents=True)  # a decoder run already there is not replaced either
    with pytest.raises(FileExistsError, match="decoder'.*replaces nothing"):
        seed_from_model(recipe.with_run_dir(tmp_path / "other"), root / "model", 0, decoder_run=0)


@pytest.mark.parametrize("name", ["recipe.yaml", "recipe_2h.yaml"])
def test_the_recipes_never_show_a_held_out_caption_to_a_model_that_reads_captions(name):
    # The shapes world holds out captions. Only the VAE's decoder, which reads none, may train on clips of the whole world,
    # and only with the encoder frozen (the DiT's latent space stays the train split's).
    recipe = ShapesRecipe.load(Path(__file__).resolve().parent.parent / "configs" / "shapes" / name)
    media = [recipe.dit_media_config()] + [recipe.more_media_config(j) for j in range(len(recipe.more_clips))]
    assert all(c.data.shapes_split == "train" for c in media)  # what every DiT latent cache is computed from
    assert all(recipe.dit_train_config(k).data.cache for k in range(len(recipe.run_names("dit"))))
    decoders = [recipe.decoder_train_config(k) for k in range(len(recipe.run_names("decoder")))]
    assert all(not c.train_vae_encoder and not c.train_text_encoder for c in decoders)
    splits = [c.data.shapes_split if c.data.shapes else "train" for c in decoders]
    assert splits[-1] == "all" and splits == sorted(splits, key="train all".split().index)  # the last runs only


@pytest.mark.slow
def test_the_two_hour_script_runs_every_stage_and_exports_beside_the_run(tmp_path):
    # scripts/train_shapes_2h.sh on a minuscule recipe of the same form: one DiT run on more clips, one decoder run
    # on the whole world beside latents and dit; it exports into the run folder, not the shipped model's.
    import os
    import subprocess
    import sys

    import yaml
    from safetensors.torch import load_file

    from vidgen.pipeline import VideoPipeline

    config = {**TINY, "run_dir": str(tmp_path / "run"), "more_clips": [4], "more_clips_from_run": [0],
              "more_clips_partial_captions": [0.0],
              "decoder_train": {**TINY["decoder_train"], "data": {"shapes": 4, "shapes_split": "all",
                                                                  "buckets": [[5, 32, 32]], "batch_size": 2}},
              "dit_train": {**TINY["dit_train"], "flow": {"shift": 3.0}}}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    script = Path(__file__).resolve().parent.parent / "scripts" / "train_shapes_2h.sh"
    env = {**os.environ, "CONFIG": str(tmp_path / "tiny.yaml"),
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    run = tmp_path / "run"
    assert not (run / "latents").exists() and (run / "latents_more").is_dir()  # the DiT's one run needs only these
    assert (run / "decoder" / "final" / "vae").is_dir() and (run / "dit" / "final" / "transformer").is_dir()
    pipe = VideoPipeline.from_pretrained(run / "pipeline")
    assert pipe.dit.config.dim == TINY["dit_model"]["dim"]
    trained = load_file(str(run / "decoder" / "final" / "vae" / "model.safetensors"))
    decoder = {k: v for k, v in pipe.vae.state_dict().items() if k.startswith("decoder.")}
    assert decoder and all(torch.equal(v, trained[k]) for k, v in decoder.items())  # the decoder run's weights


def test_a_recipe_file_can_start_from_a_base_recipe_and_replace_whole_sections(tmp_path):
    import yaml

    (tmp_path / "base.yaml").write_text(yaml.safe_dump({**TINY, "run_dir": "base_run"}))
    faster = {"base": "base.yaml", "run_dir": "fast_run", "dit_train": {**TINY["dit_train"], "flow": {"shift": 3.0}}}
    (tmp_path / "fast.yaml").write_text(yaml.safe_dump(faster))
    base, fast = ShapesRecipe.load(tmp_path / "base.yaml"), ShapesRecipe.load(tmp_path / "fast.yaml")
    assert (fast.run_dir, fast.dit_train.flow.shift, base.dit_train.flow.shift) == ("fast_run", 3.0, 1.0)
    assert dataclasses.replace(fast, run_dir="base_run", dit_train=base.dit_train) == base  # the rest is the base's
    (tmp_path / "orphan.yaml").write_text(yaml.safe_dump({**faster, "base": "missing.yaml"}))
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        ShapesRecipe.load(tmp_path / "orphan.yaml")
    with pytest.raises(ValueError, match="base"):
        ShapesRecipe.load({**TINY, "base": "base.yaml"})
