"""torchrun worker: guidance-parallel and sequence-parallel generation (and tile-parallel decode) against one process."""

import torch

from causal_vae.tiling import Tiling
from tests.distributed import report_and_exit
from tests.tiny_pipeline import tiny_vidgen_pipeline
from vidgen.parallel import ParallelContext, init_distributed

if __name__ == "__main__":
    init_distributed("gloo")
    torch.set_num_threads(1)
    pipe = tiny_vidgen_pipeline()
    call = dict(prompt="a red circle moves left", seed=3, progress=False, num_frames=9, height=48, width=48)
    results = {}

    ref = pipe(**call, output_type="latent", batch_guidance=False).frames  # (1, 4, 3, 6, 6): 27 tokens, uneven
    cfg2 = ParallelContext.from_world(cfg_size=2)
    results["cfg_parallel"] = (pipe(**call, output_type="latent", parallel=cfg2).frames - ref).abs().max().item()

    ref = pipe(**call, output_type="latent").frames
    sp2 = ParallelContext.from_world(sp_size=2)
    results["sequence_parallel"] = (pipe(**call, output_type="latent", parallel=sp2).frames - ref).abs().max().item()

    tiling = Tiling(32, 16)
    sp2_tiled = ParallelContext.from_world(sp_size=2, vae_tiling=tiling)
    frames = pipe(**call, output_type="pt", parallel=sp2_tiled).frames  # (1, T, H, W, 3) in [0, 1]
    want = ((pipe.vae.decode(ref, tiling=tiling) + 1) / 2).clamp(0, 1).permute(0, 2, 3, 4, 1)
    results["sequence_parallel_tiled_decode"] = (frames - want).abs().max().item()

    report_and_exit(results)
