"""Generation over many prompts on many ranks: data parallel over prompts, each sample optionally sequence- and
guidance-parallel (see `ParallelContext`), decoded tile-parallel when asked.

Prompt i goes to data-parallel group i mod dp_size, uses seed `seed + i` and is written to `NNNNN-slug.ext` in the
output folder, so a clip does not depend on how many ranks made it, and no two prompts share a file name.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Iterator

import torch
import torch.distributed as dist

from vidgen.parallel.context import ParallelContext

SLUG_CHARS = 40  # of the prompt kept in a file name


def output_name(index: int, prompt: str, suffix: str = ".mp4") -> str:
    """`00012-a-red-circle-moves-left.mp4`: the index makes it unique, the slug makes it readable."""
    slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:SLUG_CHARS].rstrip("-") or "prompt"
    return f"{index:05d}-{slug}{suffix}"


def my_prompts(prompts: list[str], parallel: ParallelContext) -> list[tuple[int, str]]:
    """(index, prompt) pairs of this rank's data-parallel group: every dp_size-th prompt."""
    return [(i, p) for i, p in enumerate(prompts) if i % parallel.dp_size == parallel.dp_rank]


def decode_stream(vae, parts: Iterable[torch.Tensor], parallel: ParallelContext) -> Iterator[torch.Tensor]:
    """The pipeline's decode under `parallel`: tile-parallel over the ranks sharing the sample when
    `parallel.vae_tiling` is set, else `vae.stream_decode` on each rank."""
    if parallel.vae_tiling is None or parallel.sample_size == 1:
        return vae.stream_decode(parts)
    from vidgen.parallel.vae import parallel_stream_decode

    return parallel_stream_decode(vae, parts, parallel.vae_tiling, parallel.sample_group)


def output_paths(prompts: list[str], out_dir: str | Path, suffix: str = ".mp4") -> list[Path]:
    return [Path(out_dir) / output_name(i, p, suffix) for i, p in enumerate(prompts)]


def shared_seed(seed: int | None) -> int:
    """`seed`, or one drawn on rank 0 and sent to all (ranks sharing a sample must start from the same noise)."""
    if seed is not None:
        return seed
    import random

    seed = random.SystemRandom().randrange(2**62)
    if dist.is_initialized():
        box = [seed]
        dist.broadcast_object_list(box, src=0)
        seed = box[0]
    return seed


def generate_many(pipe, prompts: list[str], targets: list[Path], parallel: ParallelContext, seed: int = 0,
                  overwrite: bool = False, fps: float | None = None, progress: bool = True,
                  **call_kwargs) -> list[Path]:
    """Generate prompt i into targets[i] with seed `seed + i`, this rank's share of them; returns the paths this rank
    wrote (only the first rank of each sample group writes). Every rank checks every target first, so an existing
    file stops all ranks alike before any work."""
    from vidgen.video_io import check_output_path, save_video

    if len(targets) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(targets)} output paths")
    for path in targets:
        check_output_path(path, overwrite=overwrite)
    if dist.is_initialized():
        dist.barrier()  # no rank writes before every rank has checked, or a fast rank's clip would fail a slow check
    written = []
    for i, prompt in my_prompts(prompts, parallel):
        out = pipe(prompt, seed=seed + i, progress=progress and parallel.is_main, parallel=parallel, **call_kwargs)
        if parallel.sample_rank == 0:
            written.append(save_video(out.frames[0], targets[i], fps=fps or pipe.config.fps, overwrite=overwrite))
    if dist.is_initialized():
        dist.barrier()
    return written
