"""The generation options shared by `vidgen generate`, `vidgen demo` and parallel generation, and their resolution
into a checked `GenerationRequest` before any model is loaded."""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
USER_ERRORS = (ValueError, TypeError, FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError,
               NotADirectoryError)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (`prog: error: message`), like every other error of the command."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_generate_args(p: argparse.ArgumentParser, prompt: bool = True) -> None:
    if prompt:
        p.add_argument("prompt", nargs="?", help="what the clip shows (or --prompts FILE)")
    p.add_argument("-o", "--output", required=prompt, default=None if prompt else "demo.mp4",
                   help="output file: .mp4, .webm, .gif, or .png/.jpg with --frames 1")
    p.add_argument("--model", default=None, help="model folder (ours, or a diffusers Wan folder or hub id: Wan 2.1 "
                                                 "T2V/I2V/FLF2V, Wan 2.2 TI2V-5B/A14B); default: the embedded model")
    p.add_argument("--frames", type=int, default=None, help="pixel frames, 1 + 4k (1 makes an image)")
    p.add_argument("--height", type=int, default=None, help="multiple of 16")
    p.add_argument("--width", type=int, default=None, help="multiple of 16")
    p.add_argument("--steps", type=int, default=None, help="denoising steps")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (<= 1: off)")
    p.add_argument("--shift", type=float, default=None, help="timestep shift (default: the model's)")
    p.add_argument("--sampler", default=None, help="euler, dpm++2m or unipc (default: the model's)")
    p.add_argument("--seed", type=int, default=None, help="noise seed in [0, 2**64) (default: random, printed)")
    p.add_argument("--image", default=None, help="first frame to animate (frame-to-video)")
    p.add_argument("--last-image", default=None, help="last frame (first-last-frame models: Wan 2.1 FLF2V, Wan 2.2 "
                                                      "I2V-A14B)")
    p.add_argument("--clean-anchor", action="store_true",
                   help="allow --image on a text-to-video-only model (experimental: it was never trained for it)")
    p.add_argument("--guidance-2", type=float, default=None, dest="guidance_2",
                   help="the low-noise expert's guidance scale (two-expert models; default: --guidance)")
    p.add_argument("--step-cache", type=float, default=None, metavar="THRESHOLD",
                   help="skip the deeper DiT blocks on steps whose first block changed less than THRESHOLD "
                        "(relative, e.g. 0.05; default: off)")
    p.add_argument("--anchor-first", action=argparse.BooleanOptionalAction, default=None,
                   help="text-to-video as frame 0 first, then the clip from it (default: the model's)")
    p.add_argument("--negative-prompt", default=None, help="what to steer away from (default: the model's)")
    p.add_argument("--fps", type=float, default=None, help="frames per second of the file (default: the model's)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    p.add_argument("--dtype", choices=sorted(DTYPES), default=None,
                   help="DiT and text encoder precision (default: fp32 on CPU, bf16 on CUDA)")
    p.add_argument("--lora", action="append", default=None, metavar="FILE[:WEIGHT]",
                   help="a Wan 2.1 LoRA (.safetensors: diffusers, Wan/ComfyUI or kohya layout) at WEIGHT (default 1); "
                        "repeat for several")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--no-progress", "--quiet", dest="no_progress", action="store_true",
                   help="no progress bars (weight loading included)")
    add_memory_args(p)


def add_memory_args(p: argparse.ArgumentParser) -> None:
    """The memory modes of vidgen/memory.py (all off by default)."""
    g = p.add_argument_group("memory (for GPUs smaller than the model; see vidgen/memory.py)")
    g.add_argument("--offload", choices=("model", "blocks"), default=None,
                   help="model: each component on the GPU only while it works; blocks: the DiT's blocks brought to "
                        "the GPU a few at a time")
    g.add_argument("--resident-blocks", type=int, default=2, help="with --offload blocks: DiT blocks on the GPU")
    g.add_argument("--fp8", action="store_true", help="store the DiT blocks' linear weights in float8 (half memory)")
    g.add_argument("--compile", action="store_true", help="compile the repeated DiT block with torch.compile")


def memory_options(args: argparse.Namespace):
    """The checked MemoryOptions of the parsed flags."""
    from vidgen.memory import MemoryOptions

    return MemoryOptions(offload=args.offload, resident_blocks=args.resident_blocks, fp8=args.fp8,
                         compile=args.compile)


@dataclass(frozen=True)
class ResolvedCall:
    """What `vidgen generate` needs after its checks: the model folder, the request, the first frame (or None)."""

    folder: Path
    request: object  # vidgen.request.GenerationRequest
    image: object = None  # a PIL image
    step_cache: object = None  # vidgen.dit.step_cache.StepCacheConfig or None
    memory: object = None  # vidgen.memory.MemoryOptions
    last_image: object = None  # a PIL image
    loras: tuple = ()  # (path, weight) per --lora, files checked


def resolve_call(args: argparse.Namespace, seeds_used: int = 1) -> ResolvedCall:
    """Check every generation option and the model folder (no weights read); errors name the option."""
    from vidgen.model_folder import folder_kind, read_model_folder
    from vidgen.model_kind import check_call
    from vidgen.device import check_device
    from vidgen.pixels import image_size, read_image_file
    from vidgen.request import GenerationRequest

    folder, defaults = read_model_folder(args.model)
    image = read_image_file(args.image) if args.image is not None else None
    last_image = read_image_file(args.last_image) if args.last_image is not None else None
    request = GenerationRequest.resolve(
        defaults, num_frames=args.frames, height=args.height, width=args.width, num_inference_steps=args.steps,
        guidance_scale=args.guidance, shift=args.shift, sampler=args.sampler, seed=args.seed, fps=args.fps,
        negative_prompt=args.negative_prompt, anchor_first=args.anchor_first, seeds_used=seeds_used,
        guidance_scale_2=args.guidance_2, image_size=None if image is None else image_size(image))
    check_call(folder_kind(folder, defaults), image, last_image, None, args.clean_anchor)
    step_cache = None
    if args.step_cache is not None:
        from vidgen.dit.step_cache import StepCacheConfig

        step_cache = StepCacheConfig(args.step_cache)
    check_device(args.device)
    memory = memory_options(args)
    loras = _check_loras(getattr(args, "lora", None), folder, memory)
    return ResolvedCall(folder, request, image, step_cache, memory, last_image, loras)


def _check_loras(specs: list[str] | None, folder: Path, memory) -> tuple:
    if not specs:
        return ()
    if memory.fp8 or memory.offload == "blocks":
        flag = "--fp8" if memory.fp8 else "--offload blocks"
        raise ValueError(f"--lora does not combine with {flag} (LoRA adapts the DiT's linear layers, which {flag} "
                         "replaces or copies); drop one of them")
    from vidgen.lora.cli import check_lora_args

    return check_lora_args(specs, folder)


def torch_dtype(name: str | None):
    """--dtype's torch dtype (None: the loader's default)."""
    import torch

    return getattr(torch, DTYPES[name]) if name else None


@contextlib.contextmanager
def one_line_warnings(prog: str) -> Iterator[None]:
    """Warnings printed as `prog: warning: message`, one line each, each message once."""
    seen: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None):
        text = str(message)
        if text not in seen:
            seen.add(text)
            print(f"{prog}: warning: {text}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("always", UserWarning)
        warnings.showwarning = show
        yield
