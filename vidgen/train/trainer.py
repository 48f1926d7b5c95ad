"""The training loop, shared by the DiT (flow matching) and the VAE (reconstruction + KL) tasks, on accelerate.

One optimizer step = `grad_accum` micro-batches. The noise of micro-batch m on rank r comes from a generator seeded with
(seed, m, r), and the data stream is a pure function of (seed, batch number), so a run resumed from a checkpoint draws
exactly what the uninterrupted run would have: its final weights are the same.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from vidgen.config_io import to_dict
from vidgen.files import write_atomic
from vidgen.train import checkpoint as ckpt
from vidgen.train.config import TrainConfig, config_hash, learning_dict, schema_defaults
from vidgen.train.data import build_data, loader
from vidgen.train.ema import EMA
from vidgen.train.schedule import lr_factor

log = logging.getLogger("vidgen.train")

CHECKPOINTS = "checkpoints"
FINAL = "final"
METRICS = "metrics.jsonl"


@dataclass
class TrainResult:
    step: int
    losses: list[float] = field(default_factory=list)  # per optimizer step of this process's run
    bad_files: set[str] = field(default_factory=set)
    output_dir: Path | None = None


def build_task(config: TrainConfig, models: dict | None = None):
    if config.task == "dit":
        from vidgen.train.dit_task import DiTTask

        return DiTTask.build(config, models)
    from vidgen.train.vae_task import VAETask

    return VAETask.build(config, models)


def _noise_generator(seed: int, micro: int, rank: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + micro) * 4099 + rank)


def _check_resumable(path: Path, state: dict, config: TrainConfig) -> None:
    if state.get("config_hash") == config_hash(config):
        return
    old, new = state.get("learning_config", {}), learning_dict(config)
    # A key the schema gained since the checkpoint was written stands there for its default (or None). Not max_steps:
    # it is a learning key only under a decaying schedule, so its absence says "constant", not "older schema".
    defaults = schema_defaults()
    old = {**{k: defaults.get(k) for k in new if k != "max_steps"}, **old}
    diff = [f"{k}: {old.get(k)!r} (checkpoint) vs {new.get(k)!r} (now)" for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k)]
    if not diff:  # the config schema gained a key since, at the value its absence meant: the same run
        return
    if isinstance(state.get("step"), int) and _same_lr_so_far(old, new, state["step"]):
        log.info("resuming %s with a new LR schedule that agrees with the old one on its %d steps so far",
                 path, state["step"])
        return
    raise ckpt.CheckpointError(
        f"checkpoint {path} was written by a different training config; differing keys:\n  " + "\n  ".join(diff)
        + "\nResume with the original config, or train into a new output_dir.")


_SCHEDULE_KEYS = ("optim.schedule", "optim.min_lr_ratio", "optim.decay_steps", "max_steps")


def _same_lr_so_far(old: dict, new: dict, steps: int) -> bool:
    """Whether two learning configs differ only in their LR schedule, and give the same LR on steps 0..steps-1.

    Then the checkpoint is exactly what the new config would have produced, so it may resume (e.g. a constant-LR run
    continued as "wsd" to anneal at the end). `old` has its absent keys at their defaults (`_check_resumable`); an
    absent max_steps (a constant schedule) is the checkpoint's step count.
    """
    keys = set(old) | set(new)
    if any(old.get(k) != new.get(k) for k in keys - set(_SCHEDULE_KEYS)):
        return False

    def factors(cfg: dict) -> list[float]:
        get = lambda k: cfg.get(k, steps if k == "max_steps" else None)  # noqa: E731
        try:
            return [lr_factor(s, warmup_steps=get("optim.warmup_steps"), max_steps=get("max_steps"),
                              schedule=get("optim.schedule"), min_ratio=get("optim.min_lr_ratio"),
                              decay_steps=get("optim.decay_steps")) for s in range(steps)]
        except (TypeError, ValueError):
            return []

    a, b = factors(old), factors(new)
    return len(a) == steps and a == b


@dataclass
class Run:
    """One training run once set up: what its step, log and save functions share. `step` and `micro` (micro-batches
    drawn so far) are its position; everything else is fixed for the run."""

    config: TrainConfig
    accelerator: object  # accelerate.Accelerator
    task: object  # DiTTask | VAETask
    data: object  # vidgen.train.data.TrainData
    wrapped: dict  # name -> the prepared (maybe DDP/FSDP-wrapped) trainable module
    optimizer: torch.optim.Optimizer
    ema: EMA | None
    manager: ckpt.CheckpointManager
    step: int = 0
    micro: int = 0

    @property
    def out(self) -> Path:
        return Path(self.config.output_dir)


def train(config: TrainConfig, *, resume: bool = False, models: dict | None = None, progress: bool = True,
          on_step: Callable[[int], None] | None = None) -> TrainResult:
    """Train per `config`; `resume` continues from the newest valid checkpoint in `output_dir/checkpoints`.

    models: ready networks overriding the config's (keys dit, vae, text) — for notebooks and tests.
    on_step(step) is called after every optimizer step (and after its checkpoint, if one was due).
    """
    manager = ckpt.CheckpointManager(Path(config.output_dir) / CHECKPOINTS, config.keep_last)
    start_path, tensors, state = _find_start(manager, config, resume)  # checked before anything big is built
    run = _set_up(config, manager, tensors, state, models)
    if state is not None:
        log.info("resumed from %s at step %d", start_path, run.step)
    result = TrainResult(run.step, output_dir=run.out, bad_files=set(run.data.unreadable))  # late failures join
    batches = iter(loader(run.data, run.micro, config.data.num_workers))  # draws a seed from the global RNG: restore
    if state is not None:
        ckpt.set_rng_state(state["rng"], {})
    main = run.accelerator.is_main_process
    bar = tqdm(total=config.max_steps, initial=run.step, disable=not (progress and main),
               desc=f"train {config.task}", dynamic_ncols=True)
    run.out.mkdir(parents=True, exist_ok=True)
    if main:  # a killed run logged steps past its last checkpoint: they rerun now
        _drop_metrics_after(run.out / METRICS, run.step)
    meter = _Throughput()
    while run.step < config.max_steps:
        loss, grad_norm, lr = _optimizer_step(run, batches, result, meter)
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}")
        if run.step % config.log_every == 0 or run.step == config.max_steps:
            _log(run, loss, grad_norm, lr, result, meter, bar if progress else None)
        if run.step % config.save_every == 0 or run.step == config.max_steps:
            _save(run)
        if config.sample_every and run.step % config.sample_every == 0 and main:
            _preview(run)
        if on_step is not None:
            on_step(run.step)
    bar.close()
    _finish(run, result, batches)
    return result


def _find_start(manager: ckpt.CheckpointManager, config: TrainConfig, resume: bool):
    """(checkpoint path, its tensors, its state) to resume from, or (None, {}, None) to start at step 0."""
    start_path = None
    if resume:
        start_path = manager.latest()
        if start_path is None:
            log.warning("--resume: no usable checkpoint in %s; starting at step 0 from the configured weights",
                        manager.folder)
    elif manager.checkpoints():
        raise FileExistsError(f"{manager.folder} already holds checkpoints; pass --resume to continue that run, or "
                              "set output_dir to a new folder")
    if start_path is None:
        return None, {}, None
    tensors, state = ckpt.load(start_path)
    _check_resumable(start_path, state, config)
    return start_path, tensors, state


def _set_up(config: TrainConfig, manager, tensors: dict, state: dict | None, models: dict | None) -> Run:
    """The accelerator, the task and its data, the trainable modules (with a checkpoint's weights), the optimizer and
    the EMA, prepared for this process."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    # accelerate keeps one process-wide state; a previous run in this process (a notebook, the tests) may have set
    # another precision. Clearing it keeps the distributed setup (PartialState) and only forgets those settings.
    AcceleratorState._reset_state()
    accelerator = Accelerator(mixed_precision=config.mixed_precision)
    torch.manual_seed(config.seed)  # same initial weights on every rank
    task = build_task(config, models)
    data = build_data(config, task.factors, accelerator.process_index, accelerator.num_processes)
    _report_skipped(data)
    modules = task.trainable()
    for name, module in modules.items():
        module.train()
        if name in tensors:
            _load_checkpoint_part(config, name, module, tensors[name])
    names = list(modules)
    prepared = accelerator.prepare(*[modules[n] for n in names], _optimizer(config, modules))
    wrapped, optimizer = dict(zip(names, prepared[:-1])), prepared[-1]
    task.to(accelerator.device)
    # after prepare, so the fp32 shadow weights live on the training device
    ema = EMA(accelerator.unwrap_model(wrapped["model"]), config.ema_decay) if config.ema_decay > 0 else None
    if ema is not None and "ema" in tensors:
        ema.load_state_dict(tensors["ema"])
    run = Run(config, accelerator, task, data, wrapped, optimizer, ema, manager)
    if state is not None:
        opt_tensors = tensors.get("optimizer", {})
        optimizer.load_state_dict(ckpt.optimizer_from_parts(opt_tensors, state["optimizer_param_groups"]))
        run.step, run.micro = state["step"], state["micro_batches"]
    return run


def _load_checkpoint_part(config: TrainConfig, name: str, module: torch.nn.Module, state: dict) -> None:
    if config.lora is not None and name == "model":  # adapters only, on the base the config names
        from vidgen.lora.train import load_adapter_state

        load_adapter_state(module, state)
    else:
        module.load_state_dict(state)


def _optimizer(config: TrainConfig, modules: dict) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters; the text encoder (when trained) in its own group with its own LR."""
    o = config.optim
    groups = [{"params": [p for p in modules["model"].parameters() if p.requires_grad], "lr": o.lr, "base_lr": o.lr}]
    if "text_encoder" in modules:
        lr = o.text_encoder_lr or o.lr
        groups.append({"params": [p for p in modules["text_encoder"].parameters() if p.requires_grad], "lr": lr,
                       "base_lr": lr})
    return torch.optim.AdamW(groups, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)


def _report_skipped(data) -> None:
    for path, reason in data.skipped.items():
        log.info("not used: %s (%s)", path, reason)
    if data.skipped:
        log.warning("data: %d file(s) not used (%d unreadable); see the 'not used' lines above", len(data.skipped),
                    len(data.unreadable))


@dataclass
class _Throughput:
    """Samples seen since the last log line, and when that was."""

    since: float = field(default_factory=time.perf_counter)
    samples: int = 0


def _optimizer_step(run: Run, batches, result: TrainResult, meter: _Throughput) -> tuple[float, torch.Tensor, float]:
    """One optimizer step over `grad_accum` micro-batches: (mean loss, gradient norm, learning rate)."""
    config, o, acc = run.config, run.config.optim, run.accelerator
    factor = lr_factor(run.step, warmup_steps=o.warmup_steps, max_steps=config.max_steps, schedule=o.schedule,
                       min_ratio=o.min_lr_ratio, decay_steps=o.decay_steps)
    for group in run.optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
    loss_sum = 0.0
    for k in range(o.grad_accum):
        batch = next(batches)
        result.bad_files.update(batch.get("bad_files", ()))
        gen = _noise_generator(config.seed, run.micro, acc.process_index)
        run.micro += 1
        with contextlib.ExitStack() as stack:
            if k < o.grad_accum - 1:  # gradients are all-reduced once, on the last micro-batch
                for m in run.wrapped.values():
                    stack.enter_context(acc.no_sync(m))
            loss = run.task.loss(run.wrapped, batch, gen, acc.device)
            acc.backward(loss / o.grad_accum)
        loss_sum += loss.detach().float().item() / o.grad_accum
        meter.samples += len(batch.get("caption", batch.get("latent", [])))
    params = [p for m in run.wrapped.values() for p in m.parameters() if p.requires_grad]
    if o.grad_clip > 0:
        grad_norm = acc.clip_grad_norm_(params, o.grad_clip)
    else:
        grad_norm = torch.nn.utils.clip_grad_norm_(params, float("inf"))
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    if run.ema is not None:
        run.ema.update(acc.unwrap_model(run.wrapped["model"]))
    run.step += 1
    result.step = run.step
    result.losses.append(loss_sum)
    return loss_sum, grad_norm, o.lr * factor


def _log(run: Run, loss: float, grad_norm, lr: float, result: TrainResult, meter: _Throughput, bar) -> None:
    """One metrics row (loss averaged over ranks) to metrics.jsonl, and to the bar's line or the log."""
    acc = run.accelerator
    dt = time.perf_counter() - meter.since
    mean_loss = acc.reduce(torch.tensor([loss], device=acc.device), "mean").item()
    row = {"step": run.step, "loss": mean_loss, "grad_norm": float(grad_norm), "lr": lr,
           "samples_per_s": meter.samples * acc.num_processes / max(dt, 1e-9), "bad_files": len(result.bad_files)}
    if acc.is_main_process:
        line = " ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items())
        if bar is not None:
            bar.write(line)
        else:
            log.info(line)
        with (run.out / METRICS).open("a") as f:
            f.write(json.dumps(row) + "\n")
    meter.since, meter.samples = time.perf_counter(), 0


def _save(run: Run) -> None:
    """A checkpoint of the trainable modules, the EMA, the optimizer and the RNG at `run.step` (main process)."""
    acc, config = run.accelerator, run.config
    acc.wait_for_everyone()
    parts = {n: acc.get_state_dict(m) for n, m in run.wrapped.items()}  # collective under FSDP: all ranks
    if not acc.is_main_process:
        return
    if config.lora is not None:  # the frozen base is the config's `model`: only the adapters are saved
        from vidgen.lora.train import adapter_state

        parts["model"] = adapter_state(parts["model"])
    if run.ema is not None:
        parts["ema"] = run.ema.state_dict()
    opt_tensors, opt_groups = ckpt.optimizer_to_parts(run.optimizer.state_dict())
    parts["optimizer"] = opt_tensors
    meta = {"format": 1, "step": run.step, "micro_batches": run.micro, "config_hash": config_hash(config),
            "learning_config": learning_dict(config), "config": to_dict(config),
            "optimizer_param_groups": opt_groups, "rng": ckpt.rng_state({}), "world_size": acc.num_processes}
    log.info("saved %s", run.manager.save(run.step, parts, meta))


def _preview(run: Run) -> None:
    """Sample clips with the current weights into output_dir/samples (main process)."""
    first_video = next((b for b in run.data.buckets if b.frames > 1), run.data.buckets[0])
    (run.out / "samples").mkdir(exist_ok=True)
    run.task.preview(run.out / "samples", run.step,
                     {n: run.accelerator.unwrap_model(m) for n, m in run.wrapped.items()}, first_video)


def _finish(run: Run, result: TrainResult, batches) -> None:
    """Report undecodable files and export the final model (the EMA weights when kept)."""
    if result.bad_files:
        log.warning("%d file(s) could not be decoded and were skipped: %s", len(result.bad_files),
                    sorted(result.bad_files)[:10])
    acc = run.accelerator
    acc.wait_for_everyone()
    if acc.is_main_process:
        final = {n: acc.unwrap_model(m) for n, m in run.wrapped.items()}
        if run.ema is not None:  # export the EMA weights, the ones meant for sampling
            run.ema.copy_to(final["model"])
        run.task.export(run.out / FINAL, final, batches, run.data.buckets)
    acc.end_training()


def _drop_metrics_after(path: Path, step: int) -> None:
    """Keep the rows of metrics.jsonl up to `step` (atomically), so a resumed run logs each step once; a row that is
    not JSON (a line cut short by the kill) goes too."""
    if not path.is_file():
        return
    keep, changed = [], False
    for line in path.read_text().splitlines():
        try:
            row_step = json.loads(line)["step"]
        except (ValueError, KeyError, TypeError):
            changed = True
            continue
        if row_step > step:
            changed = True
        else:
            keep.append(line)
    if changed:
        write_atomic(path, lambda tmp: tmp.write_text("".join(f"{line}\n" for line in keep)))
