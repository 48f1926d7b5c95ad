"""Long videos as a chain of segments, each conditioned on the end of the previous one, in constant memory.

Every segment is one pipeline window of `frames` pixel frames whose first `context_frames` (K = 1 + 4j) are context;
segment 1 has none. Frames go to the mp4 as each latent frame is decoded, and nothing but the small hand-over state
outlives a segment, so peak memory does not grow with the number of segments. Overlapping frames are written once:
segment 1 gives `frames` frames, each later one `frames − K`.

Hand-over of the context (`handover`):
- "pixel": the last K written frames are re-encoded by the causal VAE into a valid clean prefix (anchor + groups of 4)
  and the new window is decoded from a fresh VAE stream, its first K (context) frames dropped.
- "latent": the previous window's last 1 + j clean latents are the context as they are (no decode → re-encode round
  trip), and the VAE decoder continues one causal stream over the whole video. These latents are not a valid
  "anchor + groups" prefix (the anchor is encoded alone; a latent suffix starts with a group), so the DiT sees context
  unlike its training prefixes — measure (`scripts/eval_long_video_drift.py`) before preferring it.
Mitigations that combine with either: `context_noise` (noise-augmented context, σ_c as its timestep) and
`color_anchor` (drift.ColorAnchor: RGB mean/std of later segments matched to segment 1's).

Prompts: one per segment; with fewer prompts than segments the last one is reused for the rest.

Resume: after every segment its state is committed atomically in `state_dir` (default: `<output>.state/`):
`segment_NNNN.frames.gz` (the uint8 frames it wrote, gzip-compressed raw (t, H, W, 3)), `segment_NNNN.carry.pt` (the
next segment's context latents, the decoder cache in latent hand-over, the drift and colour statistics, the last K
frames) and last `segment_NNNN.json` (its seed and frame counts: the commit marker). `resume=True` replays the
committed frames into a new mp4 and continues with the next segment: the same video as an uninterrupted run. The
state folder is deleted when the video is complete.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import shutil
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from tqdm.auto import tqdm

from vidgen.conditioning import check_context_frames, encode_context
from vidgen.config_io import to_dict
from vidgen.drift import ColorAnchor
from vidgen.files import write_atomic
from vidgen.metrics import DriftMeter, DriftReport
from vidgen.decoding import StreamDecoder
from vidgen.pixels import uint8_to_signed
from vidgen.model_kind import CHANNELS, check_call
from vidgen.request import GenerationRequest, Geometry
from vidgen.video_io import VIDEO_FORMATS, VideoWriter, check_output_path, to_uint8

HANDOVERS = ("pixel", "latent")
STATE_VERSION = 1


@dataclass(frozen=True)
class LongVideoConfig:
    """How a long video is chained; unset sizes and sampler settings come from the pipeline's config."""

    segments: int
    frames: int | None = None  # pixel frames per segment window, context included (1 + 4k)
    context_frames: int = 5  # K = 1 + 4j frames of the previous segment each later one continues
    handover: str = "pixel"  # "pixel" | "latent"
    context_noise: float = 0.0  # σ_c of the noise-augmented context
    color_anchor: bool = False
    seed: int | None = None  # segment i uses seed + i; None draws one (kept in the resume state)
    height: int | None = None
    width: int | None = None
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    shift: float | None = None
    negative_prompt: str | None = None
    fps: float | None = None
    clean_anchor: bool = False  # chain a text-to-video-only model anyway (experimental; see model_kind.check_call)

    def __post_init__(self):
        if isinstance(self.segments, bool) or not isinstance(self.segments, int) or self.segments < 1:
            raise ValueError(f"segments must be a whole number >= 1, got {self.segments!r}")
        if self.handover not in HANDOVERS:
            raise ValueError(f"handover must be one of {HANDOVERS}, got {self.handover!r}")
        noise = self.context_noise
        if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0 <= noise < 1:
            raise ValueError(f"context_noise must be a noise level σ in [0, 1), got {noise!r}")


@dataclass(frozen=True)
class LongVideoResult:
    path: Path
    frames_written: int
    seed: int
    report: DriftReport | None  # with drift=True


def prompt_for_segment(prompts: list[str], i: int) -> str:
    """Segment i's prompt: prompts[i], or the last prompt once they run out (documented reuse)."""
    return prompts[min(i, len(prompts) - 1)]


def generate_long_video(pipe, prompts: str | list[str], output: str | Path, config: LongVideoConfig, *,
                        state_dir: str | Path | None = None, resume: bool = False, overwrite: bool = False,
                        drift: bool = False, progress: bool = True,
                        on_segment: Callable[[int], None] | None = None) -> LongVideoResult:
    """Generate `config.segments` chained segments into `output` (an mp4 or other video path), streaming frames.

    on_segment(i) runs after segment i (0-based) is written and its state committed. drift=True measures the
    `DriftReport` on the way (constant memory). resume=True without a saved state starts from segment 1.
    """
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise ValueError(f"prompts must be a non-empty list of strings, got {prompts!r}")
    check_long_video_model(pipe.model_kind, config)
    run = _resolve(pipe, prompts, config)
    output = check_long_video_output(output, overwrite)
    state = _State(Path(state_dir) if state_dir is not None else output.with_name(output.name + ".state"))
    run, start, chain = _begin(pipe, state, run, config, resume, progress)
    with VideoWriter(output, fps=run.fps, overwrite=overwrite) as writer:
        written = state.replay(start, writer)  # resume: the committed frames, exactly as they were written
        for i in range(start, config.segments):
            if progress:
                tqdm.write(f"segment {i + 1}/{config.segments}", file=sys.stderr)
            latents = _sample_segment(pipe, prompts, run, config, i, chain.context, progress)
            with state.frames_writer(i) as frames_file:
                for frames in chain.decode(pipe.vae, latents, i, config):  # uint8 (t, H, W, 3)
                    writer.write(frames)
                    frames_file.write(frames)
                    written += len(frames)
            chain.hand_over(pipe.vae, latents, i, config.handover)
            state.commit(i, run.seed + i, written, chain.carry(config.handover))
            if on_segment is not None:
                on_segment(i)
    state.remove()
    return LongVideoResult(output, written, run.seed, chain.meter.report() if drift else None)


def _begin(pipe, state: "_State", run: LongVideoRun, config: LongVideoConfig, resume: bool, progress: bool):
    """(the run, the first segment to make, the chain state): a fresh start, or where a committed state left off."""
    start, carry = 0, None
    if resume and state.exists():
        start, carry = state.load(run)
        run = dataclasses.replace(run, seed=state.seed())
        if progress:
            tqdm.write(f"resuming from segment {start + 1}/{config.segments} ({start} done, in {state.folder})"
                       if start < config.segments else f"all {start} segments were done; writing the video",
                       file=sys.stderr)
    elif state.exists():
        raise FileExistsError(f"{state.folder} holds the state of an unfinished run; pass resume=True (--resume) to "
                              "continue it, or delete the folder to start over")
    state.begin(run)
    context_latents = Geometry.of(pipe.dit, pipe.vae).latent_frames(run.context_frames)
    return run, start, _Chain.start(pipe.vae, run.context_frames, context_latents, carry)


def _sample_segment(pipe, prompts: list[str], run: LongVideoRun, config: LongVideoConfig, i: int,
                    context: torch.Tensor | None, progress: bool) -> torch.Tensor:
    """Segment i's window of latents (1, C, F, h, w), its context (the previous segment's end) held clean."""
    noise = torch.randn(run.latent_shape, generator=torch.Generator("cpu").manual_seed(run.seed + i))
    return pipe(prompt_for_segment(prompts, i), negative_prompt=config.negative_prompt, num_frames=run.frames,
                height=run.height, width=run.width, num_inference_steps=run.steps, guidance_scale=run.guidance,
                shift=run.shift, latents=noise, context_latents=context,
                context_noise=config.context_noise if context is not None else 0.0, output_type="latent",
                progress=progress).frames


@dataclass
class _Chain:
    """What each segment hands the next: the context latents, the last K written frames, the decoder stream (latent
    hand-over), the drift meter and the colour anchor. Saved with each segment (`carry`) for resuming."""

    k: int  # context pixel frames
    m: int  # context latent frames
    meter: DriftMeter
    anchor: ColorAnchor
    tail: deque  # the last K written frames, uint8 (H, W, 3) each
    context: torch.Tensor | None = None  # (1, C, m, h, w)
    decoder: StreamDecoder | None = None

    @classmethod
    def start(cls, vae, k: int, m: int, carry: dict | None) -> "_Chain":
        chain = cls(k, m, DriftMeter(), ColorAnchor(), deque(maxlen=k))
        if carry is not None:
            chain.meter.load_state_dict(carry["meter"])
            chain.anchor.load_state_dict(carry["anchor"])
            chain.tail.extend(carry["tail"])
            chain.context = carry["context"]
            if carry["decoder"] is not None:
                chain.decoder = StreamDecoder(vae, cache=carry["decoder"])
        return chain

    def decode(self, vae, latents: torch.Tensor, i: int, config: LongVideoConfig) -> Iterator[np.ndarray]:
        """Segment i's new frames, uint8 (t, H, W, 3), as the VAE decodes them; the context frames are not repeated."""
        if i == 0 or config.handover == "pixel":  # a fresh stream over the whole window, its context dropped
            self.decoder, feed, skip = StreamDecoder(vae), latents, (self.k if i > 0 else 0)
        else:  # the decoder stream goes on from the previous window's last latent
            feed, skip = latents[:, :, self.m:], 0
        for chunk in self.decoder(feed):
            chunk = chunk[0].cpu().numpy()  # (t, H, W, 3) in [0, 1]
            if skip:
                chunk, skip = chunk[skip:], max(0, skip - len(chunk))
                if len(chunk) == 0:
                    continue
            if config.color_anchor:
                chunk = self.anchor(chunk, i)
            frames = to_uint8(chunk)
            self.meter.add_frames(frames)
            self.tail.extend(frames)
            yield frames

    def hand_over(self, vae, latents: torch.Tensor, i: int, handover: str) -> None:
        """The next segment's context: the last K written frames re-encoded ("pixel"), or the last m latents."""
        self.meter.end_segment()
        self.anchor.end_segment(i)
        if handover == "pixel":
            self.context = encode_context(vae, uint8_to_signed(np.stack(self.tail)))  # (1, C, m, h, w)
        else:
            self.context = latents[:, :, -self.m:].clone()

    def carry(self, handover: str) -> dict:
        return {"context": self.context, "meter": self.meter.state_dict(), "anchor": self.anchor.state_dict(),
                "tail": list(self.tail), "decoder": self.decoder.cache if handover == "latent" else None}


def check_long_video_model(kind, config: LongVideoConfig) -> None:
    """A ValueError when the model cannot chain segments: every segment after the first holds the previous one's
    last latent frames clean, which only models trained with per-frame timesteps do (vidgen/model_kind.py)."""
    if config.segments < 2:
        return
    if kind.image == CHANNELS:
        raise ValueError(f"this model ({kind.name}) takes its first frame as input channels and cannot continue a "
                         "clip; chain long videos with a clean-frame model (the embedded one, Wan 2.2 TI2V-5B)")
    check_call(kind, None, None, video=True, clean_anchor=config.clean_anchor)


def check_long_video_output(output: str | Path, overwrite: bool = False) -> Path:
    """`check_output_path`, and a video file: a long video has many frames (an image file takes one)."""
    path = check_output_path(output, overwrite)
    if path.suffix.lower() not in (*VIDEO_FORMATS, ".gif"):
        raise ValueError(f"cannot write a long video to {str(path)!r}: expected a video file, one of "
                         f"{sorted(VIDEO_FORMATS) + ['.gif']}")
    return path


@dataclass(frozen=True)
class LongVideoRun:
    """Every setting of one long-video run, resolved and checked; saved as run.json, which a resume must match."""

    version: int
    prompts: list[str]
    config: dict  # the LongVideoConfig as given
    frames: int
    height: int
    width: int
    steps: int
    guidance: float
    shift: float
    context_frames: int
    fps: float
    seed: int
    latent_shape: tuple[int, ...]
    dit: dict  # the DiT's config: a resume on another model is refused

    def to_json(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))  # tuples → lists, as saved


def _resolve(pipe, prompts: list[str], config: LongVideoConfig) -> LongVideoRun:
    """Every setting of the run, validated before any heavy work; also what a resumed run must match."""
    request = GenerationRequest.resolve(
        pipe.config, Geometry.of(pipe.dit, pipe.vae), num_frames=config.frames, height=config.height,
        width=config.width, num_inference_steps=config.num_inference_steps, guidance_scale=config.guidance_scale,
        shift=config.shift, seed=config.seed, fps=config.fps, negative_prompt=config.negative_prompt,
        seeds_used=config.segments)
    if config.segments > 1:
        check_context_frames(config.context_frames, request.num_frames, request.num_frames,
                             request.geometry.temporal)
    return LongVideoRun(STATE_VERSION, prompts, to_dict(config), request.num_frames, request.height, request.width,
                        request.num_inference_steps, request.guidance_scale, request.shift, config.context_frames,
                        request.fps, request.seed, request.latent_shape(1), dataclasses.asdict(pipe.dit.config))


# --- which hand-over drifts least ---------------------------------------------------------------------------------


def mitigation_variants(context_frames: int = 5, context_noise: float = 0.05) -> dict[str, dict]:
    """The chaining options compared by `compare_chaining`: name → LongVideoConfig overrides."""
    k = {"context_frames": context_frames}
    return {
        "last frame (baseline)": {"handover": "pixel", "context_frames": 1},
        f"pixel K={context_frames}": {"handover": "pixel", **k},
        f"latent K={context_frames}": {"handover": "latent", **k},
        f"pixel K={context_frames} + noise {context_noise}": {"handover": "pixel", "context_noise": context_noise, **k},
        f"latent K={context_frames} + noise {context_noise}": {"handover": "latent", "context_noise": context_noise,
                                                              **k},
        f"pixel K={context_frames} + colour anchor": {"handover": "pixel", "color_anchor": True, **k},
        f"latent K={context_frames} + colour anchor": {"handover": "latent", "color_anchor": True, **k},
    }


def compare_chaining(pipe, prompts: str | list[str], base: LongVideoConfig, folder: str | Path,
                     variants: dict[str, dict] | None = None, progress: bool = False) -> dict[str, DriftReport]:
    """Generate the same long video once per variant (same seed and prompts) into `folder`; their drift reports."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    reports = {}
    for i, (name, overrides) in enumerate((variants or mitigation_variants(base.context_frames)).items()):
        config = dataclasses.replace(base, **overrides)
        result = generate_long_video(pipe, prompts, folder / f"variant_{i}.mp4", config, overwrite=True, drift=True,
                                     progress=progress)
        reports[name] = result.report
    return reports


def comparison_table(reports: dict[str, DriftReport]) -> str:
    """Markdown: per variant, ΔE of the last segment from segment 1, the largest ΔE, and the seam jumps."""
    rows = ["| chaining | ΔE last segment | max ΔE | seam jump mean | seam jump max |", "|---|---:|---:|---:|---:|"]
    for name, r in reports.items():
        rows.append(f"| {name} | {r.delta_e[-1]:.2f} | {r.max_delta_e:.2f} | {r.mean_seam_jump:.2f} | "
                    f"{r.max_seam_jump:.2f} |")
    return "\n".join(rows)


# --- resume state -----------------------------------------------------------------------------------------------


class _FramesFile:
    """Raw uint8 frames appended to a gzip file under a temporary name; `commit()` renames it into place."""

    def __init__(self, path: Path):
        self.path, self.tmp = path, path.with_name(f".{path.name}.tmp{os.getpid()}")
        self._file = gzip.open(self.tmp, "wb", compresslevel=1)

    def write(self, frames: np.ndarray) -> None:
        self._file.write(np.ascontiguousarray(frames).tobytes())

    def __enter__(self) -> "_FramesFile":
        return self

    def __exit__(self, exc_type, exc, tb):
        self._file.close()
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


class _State:
    """The per-segment resume state of one long-video run, in one folder (see the module docstring)."""

    def __init__(self, folder: Path):
        self.folder = folder

    def exists(self) -> bool:
        return (self.folder / "run.json").is_file()

    def _name(self, i: int, suffix: str) -> Path:
        return self.folder / f"segment_{i:04d}.{suffix}"

    def begin(self, run: LongVideoRun) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if not self.exists():
            write_atomic(self.folder / "run.json", lambda p: p.write_text(json.dumps(run.to_json(), indent=1)))

    def seed(self) -> int:
        return json.loads((self.folder / "run.json").read_text())["seed"]

    def load(self, run: LongVideoRun) -> tuple[int, dict | None]:
        """(the first segment still to make, the carry of the one before it) after checking the settings match."""
        saved = json.loads((self.folder / "run.json").read_text())
        current = {**run.to_json(), "seed": saved["seed"]}
        if run.config["seed"] is None:
            current["config"]["seed"] = saved["config"]["seed"]
        differ = sorted(key for key in set(saved) | set(current) if saved.get(key) != current.get(key))
        if differ:
            raise ValueError(f"cannot resume from {self.folder}: it was made with other settings ({', '.join(differ)} "
                             "differ); rerun with the same arguments, or delete the folder to start over")
        done = 0
        while self._name(done, "json").is_file() and self._name(done, "frames.gz").is_file():
            done += 1
        if done == 0:
            return 0, None
        carry = torch.load(self._name(done - 1, "carry.pt"), weights_only=True)
        return done, _carry_from_saved(carry)

    def frames_writer(self, i: int) -> _FramesFile:
        return _FramesFile(self._name(i, "frames.gz"))

    def replay(self, segments: int, writer) -> int:
        """Write the committed frames of the first `segments` segments to `writer`; returns how many."""
        written = 0
        for i in range(segments):
            for chunk in self.read_frames(i):
                writer.write(chunk)
                written += len(chunk)
        return written

    def read_frames(self, i: int) -> Iterator[np.ndarray]:
        info = json.loads(self._name(i, "json").read_text())
        h, w = info["frame_size"]
        with gzip.open(self._name(i, "frames.gz"), "rb") as f:
            for _ in range(info["frames"]):
                yield np.frombuffer(f.read(h * w * 3), dtype=np.uint8).reshape(1, h, w, 3)

    def commit(self, i: int, seed: int, written: int, carry: dict) -> None:
        write_atomic(self._name(i, "carry.pt"), lambda p: torch.save(_carry_to_saved(carry), p))
        h, w = carry["tail"][-1].shape[:2]
        frames = written - sum(json.loads(self._name(j, "json").read_text())["frames"] for j in range(i))
        info = {"segment": i, "seed": seed, "frames": frames, "frames_written": written, "frame_size": [h, w]}
        write_atomic(self._name(i, "json"), lambda p: p.write_text(json.dumps(info)))
        if i > 0:
            self._name(i - 1, "carry.pt").unlink(missing_ok=True)  # only the latest carry is ever needed

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _carry_to_saved(carry: dict) -> dict:
    """Only tensors, numbers, lists and dicts (torch.load(weights_only=True) reads them back)."""
    meter = dict(carry["meter"])
    meter["last"] = None if meter["last"] is None else torch.from_numpy(meter["last"])
    ref = carry["anchor"]["reference"]
    decoder = None
    if carry["decoder"] is not None:
        decoder = [[list(key), list(cache.states), cache.frames_in] for key, cache in carry["decoder"].items()]
    return {"context": carry["context"], "meter": meter, "tail": torch.from_numpy(np.stack(carry["tail"])),
            "anchor": None if ref is None else torch.from_numpy(ref), "decoder": decoder}


def _carry_from_saved(saved: dict) -> dict:
    from causal_vae.cache import TemporalCache

    meter = dict(saved["meter"])
    meter["last"] = None if meter["last"] is None else meter["last"].numpy()
    decoder = None
    if saved["decoder"] is not None:
        decoder = {tuple(key): TemporalCache(tuple(states), frames_in) for key, states, frames_in in saved["decoder"]}
    return {"context": saved["context"], "meter": meter, "tail": list(saved["tail"].numpy()),
            "anchor": {"reference": None if saved["anchor"] is None else saved["anchor"].numpy()},
            "decoder": decoder}
