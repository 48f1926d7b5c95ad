"""The training recipe of the embedded default model: stages data → vae → latents → dit → decoder → export.

Every stage is seeded and resumable: it skips work whose output already exists, and the training stages continue
from their newest checkpoint (`vidgen.train.trainer.train(..., resume=True)`), so a killed run is restarted by running
the same command again. The layout of a run folder (`run_dir`):

    data/            the seeded training clips (lossless mp4 + caption .txt), written once
    vae_init/        the VAE's seeded initial weights          vae/   its training run (checkpoints/, final/vae)
    vae_normalized/  the trained VAE with the per-channel latent mean/std measured on fresh clips
    text/            tokenizer/ + text_encoder/ (seeded random UMT5, frozen), combined/ (both in one folder)
    latents/         the DiT's training data: latents + text embeddings, computed once
    latents_more/    optional (`more_clips`): latents of further clips rendered on the fly, for the later DiT runs;
                     latents_more_2/, ... further such sets (a list in `more_clips`), each for the runs from its own on
    dit_init/        the DiT's seeded initial weights          dit/   its training run (checkpoints/, final/transformer)
    dit_continued/   optional: a second DiT run from dit/'s final weights, with a schedule of its own (warm restart);
                     dit_continued_2/, ... further ones, each from the previous run's final weights
    decoder/         optional: the VAE decoder trained further with the encoder frozen (checkpoints/, final/vae);
                     the latent space is unchanged, so it can run beside the dit stage, and export uses it
    decoder_continued/  optional: a second decoder run from decoder/'s final weights (warm restart); then
                     decoder_continued_2/, ... likewise

`export` assembles a `VideoPipeline` (our saved format) with the model's own generation defaults. `seed_from_model`
starts a run folder from such a pipeline instead (the shipped model, say): its DiT becomes the final weights of one
DiT run, and the recipe's later runs train from it.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from causal_vae.config import VAEConfig
from vidgen.config_io import from_dict, read_mapping
from vidgen.dit.config import DiTConfig
from vidgen.files import atomic_folder
from vidgen.pipeline import PipelineConfig
from vidgen.shapes.text import TextEncoderConfig
from vidgen.train.config import TrainConfig

log = logging.getLogger("vidgen_lab.shapes_recipe")

STAGES = ("data", "vae", "latents", "dit", "decoder", "export")
FINAL = "final"
SAVED = {"dit": "transformer", "decoder": "vae"}  # what a run of each training stage saves in FINAL
# Initial bias of the posterior's log-variance channels: a nearly deterministic start (σ = e^-4), so the decoder is not
# first trained through unit-variance noise that the encoder must slowly learn to shrink.
LOGVAR_INIT = -8.0


@dataclass(frozen=True)
class ShapesRecipe:
    """All of the recipe. The data paths, models and output folders of `vae_train` and `dit_train` are filled in from
    `run_dir` by the stages (whatever the YAML says there is replaced), as are their seeds (from `seed`)."""

    vae_model: VAEConfig
    dit_model: DiTConfig
    vae_train: TrainConfig
    dit_train: TrainConfig
    vae_images_train: TrainConfig | None = None  # an images-only first phase of VAE training (then vae_train)
    decoder_train: TrainConfig | None = None  # stage decoder: the decoder alone, on the normalised VAE (frozen encoder)
    # Continuations: further runs of the stage, each from the previous run's final (EMA) weights, with a fresh
    # optimizer and an LR schedule of its own, so that an annealed run can be trained further. Outputs
    # dit_continued/, dit_continued_2/, ... (`run_name`).
    dit_continue_train: tuple[TrainConfig, ...] = ()
    decoder_continue_train: tuple[TrainConfig, ...] = ()
    text_encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    defaults: PipelineConfig = field(default_factory=PipelineConfig)  # generation defaults shipped with the model
    run_dir: str = "runs/shapes"
    seed: int = 0
    train_clips: int = 1600  # clips of the "train" split (held-out captions never appear)
    frames: int = 17
    size: int = 64
    stats_clips: int = 128  # fresh clips for the latent mean/std
    # More data for the later DiT runs: `more_clips` further train-split items of the world (seed `seed + 1`, the
    # share of single frames dit_train's data.image_ratio), rendered on the fly and cached as latents_more/; the DiT
    # runs from `more_clips_from_run` on (0 = dit_train, k = its k-th continuation) train on them instead of latents/.
    # Lists give several such sets: set j (j ≥ 1) is rendered from seed `seed + 1 + j`, cached as latents_more_{j+1}/,
    # and trained on by the runs from more_clips_from_run[j] on (the runs before it keep theirs).
    more_clips: int | tuple[int, ...] = 0
    more_clips_from_run: int | tuple[int, ...] | None = None
    # Per more-clips set: the fraction of its items captioned with one attribute left out (colour, shape, direction
    # or background, e.g. "a circle moving up on a black background"; vidgen.shapes.dataset.item_caption); 0 for
    # full captions only. Given with more_clips and more_clips_from_run, one entry per set (None: no sets).
    more_clips_partial_captions: float | tuple[float, ...] | None = None

    def __post_init__(self):
        if self.vae_model.z_dim != self.dit_model.in_dim or self.dit_model.out_dim != self.dit_model.in_dim:
            raise ValueError(f"the VAE's z_dim ({self.vae_model.z_dim}) must equal the DiT's in_dim and out_dim "
                             f"({self.dit_model.in_dim}, {self.dit_model.out_dim})")
        if self.text_encoder.d_model != self.dit_model.text_dim:
            raise ValueError(f"the text encoder's d_model ({self.text_encoder.d_model}) must equal the DiT's text_dim "
                             f"({self.dit_model.text_dim})")
        vae_tasks = (self.vae_images_train, self.decoder_train, *self.decoder_continue_train)
        if self.vae_train.task != "vae" or any(c is not None and c.task != "vae" for c in vae_tasks) or any(
                c.task != "dit" for c in (self.dit_train, *self.dit_continue_train)):
            raise ValueError("vae_train, vae_images_train, decoder_train and decoder_continue_train need task: vae; "
                             "dit_train and dit_continue_train task: dit")
        if self.decoder_continue_train and self.decoder_train is None:
            raise ValueError("decoder_continue_train continues decoder_train's run: the recipe needs decoder_train too")
        runs = 1 + len(self.dit_continue_train)
        sets, starts, partial = self.more_clip_sets
        if len(sets) != len(starts) or any(n <= 0 for n in sets) or any(not 0 <= r < runs for r in starts) or any(
                a >= b for a, b in zip(starts, starts[1:])):
            raise ValueError(f"more_clips (clip counts > 0) and more_clips_from_run (DiT runs in 0..{runs - 1}, "
                             f"increasing) go together, one per set, got {self.more_clips} and "
                             f"{self.more_clips_from_run}")
        if len(partial) != len(sets) or any(not 0 <= p <= 1 for p in partial):
            raise ValueError(f"more_clips_partial_captions goes with more_clips and more_clips_from_run: one fraction "
                             f"in [0, 1] per more-clips set ({len(sets)}; 0 = full captions only), got "
                             f"{self.more_clips_partial_captions}")

    @property
    def more_clip_sets(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[float, ...]]:
        """The more-clips sets, one entry per set: (clip counts, first DiT run, partial-caption fraction)."""
        sets = self._as_tuple(self.more_clips, "more_clips")
        sets = () if sets == (0,) else sets
        starts = () if self.more_clips_from_run is None else self._as_tuple(self.more_clips_from_run,
                                                                             "more_clips_from_run")
        partial = () if self.more_clips_partial_captions is None else self._as_tuple(
            self.more_clips_partial_captions, "more_clips_partial_captions", (int, float))
        return sets, starts, tuple(float(p) for p in partial)

    @staticmethod
    def _as_tuple(value, name: str, types: tuple[type, ...] = (int,)) -> tuple:
        """A scalar or a list of `types` (never bool) as a tuple; else a ValueError naming `name`."""
        items = tuple(value) if isinstance(value, (list, tuple)) else (value,)
        if not all(isinstance(v, types) and not isinstance(v, bool) for v in items):
            kind = "an integer" if types == (int,) else "a number"
            raise ValueError(f"{name} must be {kind} or a list of them, got {value!r}")
        return items

    @classmethod
    def load(cls, source) -> "ShapesRecipe":
        """From a mapping or a YAML/JSON file. A file may start from another recipe file, `base: NAME` (relative to
        it): the base's sections, each section the file gives replacing the base's whole."""
        return from_dict(cls, _read_recipe(source), where=None if isinstance(source, Mapping) else str(source))

    def with_run_dir(self, run_dir: str | Path) -> "ShapesRecipe":
        return dataclasses.replace(self, run_dir=str(run_dir))

    # --- where each stage reads and writes ---------------------------------------------------------------------------

    @property
    def root(self) -> Path:
        return Path(self.run_dir)

    def vae_images_train_config(self) -> TrainConfig:
        c = self.vae_images_train
        data = dataclasses.replace(c.data, folder=str(self.root / "data"), manifest=None, cache=None,
                                   buckets=((1, self.size, self.size),), images_from_videos=True)
        return dataclasses.replace(c, vae=str(self.root / "vae_init"), data=data,
                                   output_dir=str(self.root / "vae_images"), seed=self.seed)

    def vae_train_config(self, max_steps: int | None = None) -> TrainConfig:
        c = self.vae_train
        data = dataclasses.replace(c.data, folder=str(self.root / "data"), manifest=None, cache=None)
        start = self.root / ("vae_images/final/vae" if self.vae_images_train is not None else "vae_init")
        return dataclasses.replace(c, vae=str(start), data=data, output_dir=str(self.root / "vae"),
                                   seed=self.seed, max_steps=max_steps or c.max_steps)

    def run_names(self, stage: str) -> list[str]:
        """The output folders of the runs of training stage "dit" or "decoder", in order (`run_name`): the first run,
        then one per continuation."""
        return [run_name(stage, k) for k in range(1 + len(getattr(self, f"{stage}_continue_train")))]

    def _run_section(self, stage: str, run: int) -> TrainConfig:
        """The recipe's section for run `run` of training stage "dit" or "decoder" (0: `{stage}_train`, k ≥ 1: the
        k-th entry of `{stage}_continue_train`)."""
        first = getattr(self, f"{stage}_train")
        runs = ([first] if first is not None else []) + list(getattr(self, f"{stage}_continue_train"))
        if not runs:
            raise ValueError(f"the recipe has no {stage}_train section: the {stage} stage has nothing to run")
        if not 0 <= run < len(runs):
            raise ValueError(f"the recipe's {stage} stage has {len(runs)} run(s) ({stage}_train and "
                             f"{stage}_continue_train); there is no run {run}")
        return runs[run]

    def decoder_train_config(self, run: int = 0) -> TrainConfig:
        """Run `run` of the decoder stage: 0 is decoder_train, k ≥ 1 the k-th continuation (from run k-1's final
        weights). It trains on the data stage's clips, or, where its section sets `data.shapes`, on that many items of
        the world rendered on the fly (`data.shapes_split` saying which captions' clips)."""
        c = self._run_section("decoder", run)
        start = self.root / run_name("decoder", run - 1) / FINAL / "vae" if run else self.root / "vae_normalized"
        if c.data.shapes is not None:  # clips of the world rendered on the fly (seeded by the run's seed)
            data = dataclasses.replace(c.data, folder=None, manifest=None, cache=None)
        else:  # the training clips written by the data stage
            data = dataclasses.replace(c.data, folder=str(self.root / "data"), manifest=None, cache=None)
        return dataclasses.replace(c, vae=str(start), data=data, train_vae_encoder=False,
                                   output_dir=str(self.root / run_name("decoder", run)), seed=self.seed + run)

    def dit_train_config(self, run: int = 0) -> TrainConfig:
        """Run `run` of the dit stage: 0 is dit_train, k ≥ 1 the k-th continuation (from run k-1's final weights)."""
        c = self._run_section("dit", run)
        start = self.root / run_name("dit", run - 1) / FINAL / "transformer" if run else self.root / "dit_init"
        data = dataclasses.replace(c.data, folder=None, manifest=None, cache=str(self.root / self.dit_latents(run)))
        return dataclasses.replace(c, model=str(start), vae=str(self.root / "vae_normalized"),
                                   text_encoder=str(self.root / "text" / "combined"), data=data,
                                   output_dir=str(self.root / run_name("dit", run)), seed=self.seed + run)

    def dit_latents(self, run: int) -> str:
        """The latent cache (a folder in run_dir) that run `run` of the dit stage trains on: that of the last
        more-clips set starting at or before it, else latents/."""
        sets = [j for j, start in enumerate(self.more_clip_sets[1]) if start <= run]
        return more_latents_name(sets[-1]) if sets else "latents"

    def more_media_config(self, j: int = 0) -> TrainConfig:
        """What more-clips set `j` (latents_more/, latents_more_2/, ...) is computed from: `more_clips[j]` items of
        the world rendered on the fly (seed + 1 + j), `more_clips_partial_captions[j]` of them captioned partly."""
        c = self.dit_media_config()
        buckets = ((self.frames, self.size, self.size), (1, self.size, self.size))
        counts, _, partial = self.more_clip_sets
        data = dataclasses.replace(c.data, folder=None, shapes=counts[j], buckets=buckets,
                                   image_ratio=self.dit_train.data.image_ratio,
                                   partial_captions=partial[j])
        return dataclasses.replace(c, data=data, seed=self.seed + 1 + j)

    def dit_media_config(self) -> TrainConfig:
        """The DiT's config reading the training clips themselves, whole clips and single frames of them: what the
        latent cache is computed from."""
        c = self.dit_train_config()
        buckets = ((1, self.size, self.size), (self.frames, self.size, self.size))
        data = dataclasses.replace(c.data, folder=str(self.root / "data"), cache=None, buckets=buckets,
                                   images_from_videos=True, random_crop=False)
        return dataclasses.replace(c, data=data)


def _read_recipe(source) -> dict:
    """A recipe's mapping, its `base:` file's sections first (recursively), then its own."""
    data = read_mapping(source)
    base = data.pop("base", None)
    if base is None:
        return data
    if isinstance(source, Mapping):
        raise ValueError(f"base: {base!r} names a recipe file relative to this one; a mapping has no file")
    return {**_read_recipe(Path(source).parent / base), **data}


def more_latents_name(j: int) -> str:
    """The folder of more-clips set `j`: latents_more, latents_more_2, ..."""
    return "latents_more" if j == 0 else f"latents_more_{j + 1}"


def run_name(stage: str, run: int) -> str:
    """The output folder of run `run` of a training stage: dit, dit_continued, dit_continued_2, ..."""
    return stage if run == 0 else f"{stage}_continued" if run == 1 else f"{stage}_continued_{run}"


# --- stages ----------------------------------------------------------------------------------------------------------


def stage_data(recipe: ShapesRecipe) -> Path:
    """The training clips: `train_clips` seeded clips of the train split, lossless, written once."""
    from vidgen.shapes.dataset import write_dataset

    folder = recipe.root / "data"
    if folder.is_dir():
        log.info("data: %s exists", folder)
        return folder
    log.info("data: writing %d clips to %s", recipe.train_clips, folder)
    return write_dataset(folder, recipe.train_clips, recipe.seed, frames=recipe.frames, size=recipe.size,
                         split="train")


def stage_vae(recipe: ShapesRecipe, max_steps: int | None = None, progress: bool = True) -> Path:
    """Train the VAE on clips and single frames (L1 + small KL); resumes from its newest checkpoint."""
    from causal_vae import CausalVAE
    from causal_vae.init import init_for_training
    from vidgen.train.trainer import train

    stage_data(recipe)
    init = recipe.root / "vae_init"
    if not init.is_dir():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(recipe.seed)
            vae = init_for_training(CausalVAE(recipe.vae_model))
        with torch.no_grad():
            vae.quant_conv.bias[vae.config.z_dim:] = LOGVAR_INIT  # channels z_dim.. are the log-variance
        vae.save_pretrained(init)
    if recipe.vae_images_train is not None:
        # Images first: with a few clips per batch the decoder otherwise chases each batch's background colour
        # before the encoder has learnt to carry it, and video training does not take off.
        train(recipe.vae_images_train_config(), resume=True, progress=progress)
    config = recipe.vae_train_config(max_steps)
    train(config, resume=True, progress=progress)
    return Path(config.output_dir) / FINAL / "vae"


@torch.no_grad()
def latent_stats(vae, recipe: ShapesRecipe, batch_size: int = 8) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the raw posterior means over `stats_clips` fresh clips (a seed the training data
    does not use)."""
    from vidgen.shapes.dataset import ShapesDataset

    data = ShapesDataset(recipe.stats_clips, seed=recipe.seed + 1_000_003, frames=recipe.frames, size=recipe.size)
    mus = []
    for start in range(0, len(data), batch_size):
        video = torch.stack([data[i]["video"] for i in range(start, min(len(data), start + batch_size))])
        mus.append(vae.posterior(video)[0].float())  # (B, z, F, h, w)
    mu = torch.cat(mus).transpose(0, 1).flatten(1)  # (z, everything else)
    return mu.mean(dim=1).tolist(), mu.std(dim=1).clamp_min(1e-4).tolist()


def stage_latents(recipe: ShapesRecipe, progress: bool = True) -> Path:
    """Normalise the trained VAE's latents, build the frozen text encoder, and cache the DiT's training data."""
    from causal_vae import CausalVAE
    from vidgen.dit.model import DiT
    from vidgen.shapes.text import build_shapes_text_encoder
    from vidgen.train.data import precompute_from_config

    root = recipe.root
    normalized = root / "vae_normalized"
    if not normalized.is_dir():
        trained = root / "vae" / FINAL / "vae"
        if not trained.is_dir():
            raise FileNotFoundError(f"{trained} does not exist: run the vae stage to the end first")
        vae = CausalVAE.from_pretrained(trained)
        mean, std = latent_stats(vae, recipe)
        log.info("latents: mean %s std %s", [round(m, 3) for m in mean], [round(s, 3) for s in std])
        out = CausalVAE(dataclasses.replace(vae.config, latents_mean=tuple(mean), latents_std=tuple(std)))
        out.load_state_dict(vae.state_dict())
        out.save_pretrained(normalized)
    text = root / "text"
    if not (text / "combined").is_dir():
        build_shapes_text_encoder(text, recipe.seed, recipe.text_encoder, overwrite=True)
        _combine_text(text)
    init = root / "dit_init"
    if not init.is_dir():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(recipe.seed)
            DiT(recipe.dit_model).save_pretrained(init)
    # Only the caches of the DiT runs still to train (a run seeded by seed_from_model needs none).
    needed = {recipe.dit_latents(k) for k in runs_to_train(recipe, "dit")}
    cache = root / "latents"
    if "latents" in needed and not cache.is_dir():
        precompute_from_config(recipe.dit_media_config(), cache)
    for j in range(len(recipe.more_clip_sets[0])):
        name = more_latents_name(j)
        if name in needed and not (root / name).is_dir():
            precompute_from_config(recipe.more_media_config(j), root / name)
    return cache


def _combine_text(text: Path) -> None:
    """text/combined: the encoder and its tokenizer in one transformers folder (what the trainer reads)."""
    with atomic_folder(text / "combined") as tmp:
        shutil.copytree(text / "text_encoder", tmp, dirs_exist_ok=True)
        for f in (text / "tokenizer").iterdir():
            shutil.copy2(f, tmp / f.name)


def run_is_seeded(recipe: ShapesRecipe, stage: str, run: int) -> bool:
    """Whether run `run` of training stage "dit" or "decoder" was put in place by `seed_from_model`: final weights and
    no checkpoints of its own."""
    from vidgen.train.trainer import CHECKPOINTS

    folder = recipe.root / run_name(stage, run)
    return (folder / FINAL / SAVED[stage]).is_dir() and not (folder / CHECKPOINTS).exists()


def runs_to_train(recipe: ShapesRecipe, stage: str) -> list[int]:
    """The runs of training stage "dit" or "decoder" that it trains (or resumes): all of them after the last seeded
    one."""
    runs = range(len(recipe.run_names(stage)))
    seeded = [k for k in runs if run_is_seeded(recipe, stage, k)]
    return [k for k in runs if not seeded or k > seeded[-1]]


def seed_from_model(recipe: ShapesRecipe, folder: str | Path, dit_run: int, decoder_run: int | None = None) -> None:
    """Start `run_dir` from a saved pipeline (our format, e.g. the shipped model) rather than from scratch: its VAE
    becomes vae_normalized/ (only its encoder matters to the DiT, and the decoder runs leave it as it is), its text
    encoder and tokenizer text/, its DiT the final weights of DiT run `dit_run` and, with `decoder_run`, its VAE also
    the final weights of that decoder run. The latents, dit and decoder stages then compute and train only what the
    runs after those need. Nothing that exists is replaced."""
    from vidgen.dit.model import DiT

    folder = Path(folder)
    parts = {"vae": ["vae_normalized"], "text_encoder": ["text/text_encoder"], "tokenizer": ["text/tokenizer"],
             "transformer": [f"{run_name('dit', dit_run)}/{FINAL}/transformer"]}
    missing = [p for p in parts if not (folder / p).is_dir()]
    if missing:
        raise FileNotFoundError(f"{folder} is not a saved pipeline: it lacks {missing} (expected {list(parts)})")
    for stage, run in (("dit", dit_run), ("decoder", decoder_run)):  # the last run: that stage has nothing to train
        n = len(recipe.run_names(stage)) if stage == "dit" or recipe.decoder_train is not None else 0
        if run is not None and not 0 <= run < n:
            raise ValueError(f"{stage}_run must be one of the recipe's {n} {stage} runs, 0..{n - 1}, got {run}")
    if decoder_run is not None:
        parts["vae"].append(f"{run_name('decoder', decoder_run)}/{FINAL}/vae")
    config = DiT.from_pretrained(folder / "transformer", dtype=torch.float32).config
    if config != recipe.dit_model:
        raise ValueError(f"{folder / 'transformer'} is not the recipe's DiT: its config is {config}, the recipe's "
                         f"dit_model {recipe.dit_model}")
    targets = {recipe.root / Path(t).parts[0] for copies in parts.values() for t in copies}  # text/, dit/, ...
    existing = sorted(str(t) for t in targets if t.exists())
    if existing:
        raise FileExistsError(f"{existing} already exist: seed_from_model starts a fresh run_dir, it replaces nothing")
    for part, copies in parts.items():
        for target in copies:
            with atomic_folder(recipe.root / target) as tmp:
                shutil.copytree(folder / part, tmp, dirs_exist_ok=True)
    _combine_text(recipe.root / "text")


def _train_runs(configs: list[TrainConfig], max_steps: int | None, progress: bool) -> None:
    """Train each run in turn (resuming); `max_steps` overrides the step count of the last run only."""
    from vidgen.train.trainer import train

    for i, config in enumerate(configs):
        if max_steps and i == len(configs) - 1:
            config = dataclasses.replace(config, max_steps=max_steps)
        train(config, resume=True, progress=progress)


def stage_dit(recipe: ShapesRecipe, max_steps: int | None = None, progress: bool = True) -> Path:
    """Train the DiT on the cached latents (flow matching, clean prefixes, text dropout), then its continuations,
    if any; resumes. After a run seeded by `seed_from_model`, only the runs after it. `max_steps` applies to the last
    run."""
    configs = [recipe.dit_train_config(run=k) for k in runs_to_train(recipe, "dit")]
    if not configs:  # every run was seeded
        return recipe.root / recipe.run_names("dit")[-1] / FINAL / "transformer"
    for cache in dict.fromkeys(c.data.cache for c in configs):
        if not Path(cache).is_dir():
            raise FileNotFoundError(f"{cache} does not exist: run the latents stage first")
    _train_runs(configs, max_steps, progress)
    return Path(configs[-1].output_dir) / FINAL / "transformer"


def stage_decoder(recipe: ShapesRecipe, max_steps: int | None = None, progress: bool = True) -> Path:
    """Train the decoder further with the encoder frozen (the DiT's latent space does not move), then its
    continuations, if any; resumes. After a run seeded by `seed_from_model`, only the runs after it. `max_steps`
    applies to the last run."""
    if not (recipe.root / "vae_normalized").is_dir():
        raise FileNotFoundError(f"{recipe.root / 'vae_normalized'} does not exist: run the latents stage first")
    configs = [recipe.decoder_train_config(run=k) for k in runs_to_train(recipe, "decoder")]
    if not configs:  # every run was seeded
        return recipe.root / recipe.run_names("decoder")[-1] / FINAL / "vae"
    _train_runs(configs, max_steps, progress)
    return Path(configs[-1].output_dir) / FINAL / "vae"


def trained_vae_folder(recipe: ShapesRecipe) -> Path:
    """The VAE to ship: the last finished run of the decoder stage (of those the recipe configures), else the
    normalised VAE."""
    for run in reversed(recipe.run_names("decoder")):
        folder = recipe.root / run / FINAL / "vae"
        if folder.is_dir():
            return folder
    return recipe.root / "vae_normalized"


def load_trained_dit(recipe: ShapesRecipe, from_checkpoint: bool = False):
    """The trained DiT of the stage's last configured run (dit/, or its last continuation): its final export, or
    (`from_checkpoint`, or no final yet) its newest checkpoint's EMA weights (its raw weights when it has no EMA). A
    continuation without a checkpoint yet falls back to the run before it."""
    from vidgen.dit.model import DiT
    from vidgen.train import checkpoint as ckpt
    from vidgen.train.trainer import CHECKPOINTS

    for run in reversed(recipe.run_names("dit")):
        final = recipe.root / run / FINAL / "transformer"
        if final.is_dir() and not from_checkpoint:
            return DiT.from_pretrained(final, dtype=torch.float32), str(final)
        latest = ckpt.CheckpointManager(recipe.root / run / CHECKPOINTS).latest()
        if latest is not None:
            break
    if latest is None:
        raise FileNotFoundError(f"no trained DiT in {recipe.root / 'dit'}: run the dit stage first")
    tensors, state = ckpt.load(latest)
    dit = DiT.from_pretrained(recipe.root / "dit_init", dtype=torch.float32)
    dit.load_state_dict(tensors.get("ema") or tensors["model"])
    return dit, f"{latest} ({'ema' if 'ema' in tensors else 'model'} weights, step {state['step']})"


def build_pipeline(recipe: ShapesRecipe, from_checkpoint: bool = False):
    """The trained pipeline in memory, with the recipe's generation defaults."""
    from causal_vae import CausalVAE
    from vidgen.pipeline import VideoPipeline
    from vidgen.text import TextEncoder

    dit, source = load_trained_dit(recipe, from_checkpoint)
    log.info("export: DiT from %s", source)
    vae_folder = trained_vae_folder(recipe)
    log.info("export: VAE from %s", vae_folder)
    vae = CausalVAE.from_pretrained(vae_folder)
    text = TextEncoder.from_pretrained(recipe.root / "text" / "text_encoder", recipe.root / "text" / "tokenizer",
                                       max_tokens=dit.config.text_len)
    return VideoPipeline(dit.eval(), vae.eval(), text, recipe.defaults)


def stage_export(recipe: ShapesRecipe, folder: str | Path, from_checkpoint: bool = False) -> Path:
    """Save the trained pipeline to `folder` (replacing what is there) in our saved format."""
    return build_pipeline(recipe, from_checkpoint).save_pretrained(folder, overwrite=True)


def run_stages(recipe: ShapesRecipe, stages: list[str], *, export_to: str | Path, max_steps: int | None = None,
               from_checkpoint: bool = False, progress: bool = True) -> None:
    """Run `stages` in the recipe's order; `max_steps` overrides the training stages' step count."""
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; stages are {list(STAGES)}")
    for stage in STAGES:
        if stage not in stages:
            continue
        log.info("stage %s", stage)
        if stage == "data":
            stage_data(recipe)
        elif stage == "vae":
            stage_vae(recipe, max_steps, progress)
        elif stage == "latents":
            stage_latents(recipe, progress)
        elif stage == "dit":
            stage_dit(recipe, max_steps, progress)
        elif stage == "decoder":
            stage_decoder(recipe, max_steps, progress)
        else:
            stage_export(recipe, export_to, from_checkpoint)
