"""TrainConfig: everything a training run needs, as frozen dataclasses loaded from YAML (configs/train/*.yaml).

Two tasks share one loop: `task: dit` trains the DiT with flow matching on VAE latents (a frozen VAE encodes raw media, or
a precomputed cache supplies latents and text embeddings); `task: vae` trains the causal VAE itself on pixels.

Clean-prefix conditioning (`flow.prefix_probs`): each training clip keeps a random number of leading latent frames clean
(σ = 0, not in the loss) — none with the first weight (text-to-video), the first frame with the second (frame-to-video,
the first latent frame is the image anchor), 2..F−1 frames with the third (continuation). One model so learns all three.
`flow.context_sigma_max > 0` noises that context a little (σ ~ U(0, max)) so the model tolerates imperfect context.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

from vidgen.config_io import from_dict, to_dict
from vidgen.data.sources import DATA_SOURCES
from vidgen.lora.config import BLOCK_LINEARS, LoRAConfig
from vidgen.train.schedule import SCHEDULES


@dataclass(frozen=True)
class DataConfig:
    folder: str | None = None  # media files with sidecar .txt captions
    manifest: str | None = None  # CSV or JSONL: path, caption[, fps, frames, height, width]
    cache: str | None = None  # precomputed latents + text embeddings (vidgen.data.precompute), task dit only
    shapes: int | None = None  # the procedural shapes world rendered on the fly: this many seeded items
    # With shapes: the fraction of items captioned with one attribute left out (vidgen.shapes.dataset.item_caption).
    partial_captions: float = 0.0
    # With shapes: which captions its items are drawn from (DATA_SOURCES["shapes"].splits). "all" includes the held-out
    # ones: the recipe uses it for the caption-free VAE decoder only (docs/training_shapes.md); a DiT trained on it
    # has seen the held-out captions, and its held-out evaluation no longer means anything.
    shapes_split: str = "train"
    # With shapes: this fraction of items shows one of these colours outside the world
    # (vidgen.shapes.world.EXTRA_COLOURS, e.g. ["orange"]) on any shape, direction and background; the rest are the
    # items they would be without it.
    shapes_extra_colours: tuple[str, ...] = ()
    shapes_extra_fraction: float = 0.0
    buckets: tuple[tuple[int, int, int], ...] = ((17, 64, 64),)  # (frames, height, width); frames = 1 + 4k
    fps: float | None = None  # clips are sampled at this frame rate (None: the file's own)
    image_ratio: float = 0.0  # fraction of batches that are single images
    images_from_videos: bool = False  # single frames of videos also fill the image buckets
    random_crop: bool = False  # else centre crop
    batch_size: int = 1  # per process, per micro-step
    num_workers: int = 0


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    eps: float = 1e-8
    # After linear warmup: "constant"; "cosine" (to min_lr_ratio·lr at max_steps); "wsd" (constant, then linear to
    # min_lr_ratio·lr over the last decay_steps steps: a constant run resumed as wsd anneals without changing its past).
    schedule: str = "constant"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    decay_steps: int = 0  # schedule wsd only
    grad_clip: float = 1.0  # max global grad norm; 0 = off
    grad_accum: int = 1  # micro-batches per optimizer step
    text_encoder_lr: float | None = None  # when training the text encoder jointly; None: same as lr


@dataclass(frozen=True)
class FlowConfig:
    sigma_sampler: str = "logit_normal"  # or "uniform"
    sigma_mean: float = 0.0
    sigma_std: float = 1.0
    shift: float = 1.0
    prefix_probs: tuple[float, float, float] = (0.6, 0.25, 0.15)  # (none, first frame, several frames) clean
    context_sigma_max: float = 0.0  # noise augmentation of the clean context
    text_dropout: float = 0.1  # caption → "" with this probability, for classifier-free guidance
    # Each text token's embedding → the empty caption's at that position, with this probability (0 = off): the DiT
    # learns to read every word on its own, not only in the combinations the data holds.
    token_dropout: float = 0.0


@dataclass(frozen=True)
class VAELossConfig:
    l1_weight: float = 1.0
    l2_weight: float = 0.0  # L1 alone settles on the median colour when most pixels are flat background; L2 does not
    kl_weight: float = 1e-6
    perceptual_weight: float = 0.0  # needs a pretrained perceptual network; none can be had offline (must stay 0)
    adversarial_weight: float = 0.0  # > 0: a per-frame patch discriminator trained beside the VAE (sharper edges)
    discriminator_dim: int = 32  # its first stage's channels


LORA_TARGETS = BLOCK_LINEARS  # the default adapter targets


@dataclass(frozen=True)
class TrainConfig:
    task: str = "dit"  # "dit" or "vae"
    model: str = "tiny"  # task dit: a DiT preset name, a DiTConfig YAML, or a pretrained folder
    vae: str | None = None  # a VAE preset name or pretrained folder (frozen for dit, trained for vae)
    text_encoder: str | None = None  # a transformers folder (tokenizer + encoder)
    train_text_encoder: bool = False  # joint training (small toy encoders); default frozen
    # task vae: false trains the decoder alone (encoder and quant_conv frozen), so the latent space a DiT was trained
    # on stays exactly as it is while the reconstructions improve
    train_vae_encoder: bool = True
    # task vae: first widen the loaded VAE's decoder to this decoder_base_dim, computing exactly what it did
    # (causal_vae.widen; a multiple of its width; the shares drawn from `seed`), then train it
    widen_decoder: int | None = None
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    vae_loss: VAELossConfig = field(default_factory=VAELossConfig)
    lora: LoRAConfig | None = None  # task dit: train adapters only, on the frozen `model`; exported as one file
    output_dir: str = "runs/train"
    max_steps: int = 1000
    seed: int = 0
    mixed_precision: str = "no"  # "no" or "bf16"
    gradient_checkpointing: bool = False
    ema_decay: float = 0.0  # 0 = no EMA weights
    log_every: int = 10
    save_every: int = 500
    keep_last: int = 3
    sample_every: int = 0  # steps between preview clips (0 = never)
    sample_prompts: tuple[str, ...] = ()
    sample_steps: int = 20

    def __post_init__(self):
        errors = []
        if self.task not in ("dit", "vae"):
            errors.append(f"task must be 'dit' or 'vae', got {self.task!r}")
        if self.mixed_precision not in ("no", "bf16"):
            errors.append(f"mixed_precision must be 'no' or 'bf16', got {self.mixed_precision!r}")
        if self.optim.schedule not in SCHEDULES:
            errors.append(f"optim.schedule must be one of {SCHEDULES}, got {self.optim.schedule!r}")
        if self.optim.schedule == "wsd" and not 1 <= self.optim.decay_steps <= self.max_steps - self.optim.warmup_steps:
            errors.append(f"optim.decay_steps must be in [1, max_steps - warmup_steps] for schedule 'wsd', got "
                          f"{self.optim.decay_steps}")
        if self.flow.sigma_sampler not in ("uniform", "logit_normal"):
            errors.append(f"flow.sigma_sampler must be 'uniform' or 'logit_normal', got {self.flow.sigma_sampler!r}")
        if sum(x is not None for x in (self.data.folder, self.data.manifest, self.data.cache, self.data.shapes)) != 1:
            errors.append("data needs exactly one of folder, manifest, cache or shapes")
        if self.data.partial_captions and (self.data.shapes is None or not 0 < self.data.partial_captions <= 1):
            errors.append(f"data.partial_captions (a fraction in [0, 1]) applies to data.shapes only, got "
                          f"{self.data.partial_captions} with shapes={self.data.shapes}")
        if self.data.shapes_split != "train":
            splits = DATA_SOURCES["shapes"].splits()
            if self.data.shapes is None or self.data.shapes_split not in splits:
                errors.append(f"data.shapes_split (one of {list(splits)}) applies to data.shapes only, got "
                              f"{self.data.shapes_split!r} with shapes={self.data.shapes}")
        if self.data.cache is not None and self.task != "dit":
            errors.append("data.cache holds DiT latents; task vae trains on pixels (use data.folder or data.manifest)")
        if self.widen_decoder is not None and (self.task != "vae" or self.widen_decoder < 1):
            errors.append(f"widen_decoder (a decoder_base_dim >= 1) applies to task vae only, got {self.widen_decoder} "
                          f"with task {self.task!r}")
        if self.vae_loss.adversarial_weight < 0 or self.vae_loss.discriminator_dim < 1:
            errors.append(f"vae_loss.adversarial_weight must be >= 0 and vae_loss.discriminator_dim >= 1, got "
                          f"{self.vae_loss.adversarial_weight} and {self.vae_loss.discriminator_dim}")
        if (self.data.shapes_extra_colours or self.data.shapes_extra_fraction) and (
                self.data.shapes is None or not 0 < self.data.shapes_extra_fraction <= 1
                or not self.data.shapes_extra_colours):
            errors.append(f"data.shapes_extra_colours (colour names) and data.shapes_extra_fraction (in (0, 1]) go "
                          f"together and apply to data.shapes only, got {list(self.data.shapes_extra_colours)} and "
                          f"{self.data.shapes_extra_fraction} with shapes={self.data.shapes}")
        if self.lora is not None:
            errors += _lora_errors(self)
        if self.vae_loss.perceptual_weight != 0:
            errors.append("vae_loss.perceptual_weight must be 0: no pretrained perceptual network is available offline")
        for name in ("max_steps", "save_every", "log_every", "keep_last"):
            if getattr(self, name) < 1:
                errors.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.optim.grad_accum < 1:
            errors.append(f"optim.grad_accum must be >= 1, got {self.optim.grad_accum}")
        if not 0.0 <= self.ema_decay < 1.0:
            errors.append(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if not 0.0 <= self.flow.text_dropout <= 1.0:
            errors.append(f"flow.text_dropout must be in [0, 1], got {self.flow.text_dropout}")
        if not 0.0 <= self.flow.token_dropout < 1.0:
            errors.append(f"flow.token_dropout must be in [0, 1), got {self.flow.token_dropout}")
        if errors:
            raise ValueError("invalid training config:\n  " + "\n  ".join(errors))

    @classmethod
    def load(cls, source) -> "TrainConfig":
        return from_dict(cls, source)


def _lora_errors(config: TrainConfig) -> list[str]:
    lora, errors = config.lora, []
    if config.task != "dit":
        errors.append(f"lora applies to task dit only, got task {config.task!r}")
    if config.train_text_encoder:
        errors.append("lora trains adapters on the DiT alone; set train_text_encoder: false")
    if not isinstance(lora.rank, int) or lora.rank < 1 or lora.alpha <= 0:
        errors.append(f"lora.rank must be an integer >= 1 and lora.alpha > 0, got {lora.rank} and {lora.alpha}")
    if not 0.0 <= lora.dropout < 1.0:
        errors.append(f"lora.dropout must be in [0, 1), got {lora.dropout}")
    if not lora.target_modules:
        errors.append(f"lora.target_modules must name at least one block linear, e.g. {list(LORA_TARGETS)}")
    return errors


# Keys that may change between a run and its resumption: they steer the run, not what is learned at each step.
RUN_CONTROL_KEYS = frozenset({
    "output_dir", "max_steps", "log_every", "save_every", "keep_last", "sample_every", "sample_prompts",
    "sample_steps", "data.num_workers",
})


def learning_dict(config: TrainConfig) -> dict:
    """The config flattened to dotted keys, without run-control keys: two runs with equal dicts learn the same."""
    flat = {}

    def walk(prefix, value):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}{k}.", v)
        else:
            flat[prefix[:-1]] = value

    walk("", to_dict(config))
    keep = {k: v for k, v in flat.items() if k not in RUN_CONTROL_KEYS}
    if config.optim.schedule in ("cosine", "wsd"):  # their decay is placed by max_steps, so it shapes the steps
        keep["max_steps"] = config.max_steps
    return keep


def schema_defaults() -> dict:
    """Every learning key's default (dotted keys, as in `learning_dict`): the value a key added to the schema since a
    checkpoint was written stands for in that checkpoint, since new options default to what the code did before."""
    flat = {}

    def walk(prefix: str, cls) -> None:
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
            if dataclasses.is_dataclass(default):
                walk(f"{prefix}{f.name}.", type(default))
            else:
                flat[prefix + f.name] = to_dict(default)  # tuples as lists, as in learning_dict

    walk("", TrainConfig)
    return flat


def config_hash(config: TrainConfig) -> str:
    return hashlib.sha256(json.dumps(learning_dict(config), sort_keys=True).encode()).hexdigest()[:16]

