"""torchrun worker: tile-parallel streamed VAE decode against the single-process tiled decode."""

import torch

from causal_vae import CausalVAE
from causal_vae.config import preset
from causal_vae.tiling import Tiling
from tests.distributed import report_and_exit
from vidgen.parallel import init_distributed
from vidgen.parallel.vae import parallel_decode, parallel_stream_decode

if __name__ == "__main__":
    init_distributed("gloo")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    vae = CausalVAE(preset("tiny")).eval()
    z = torch.randn(1, 4, 3, 10, 6, generator=torch.Generator().manual_seed(1))
    results = {}
    tilings = {"two_tiles": Tiling(48, 16), "eight_tiles": Tiling(32, 16), "one_tile": Tiling(128, 0)}
    for name, tiling in tilings.items():
        ref = vae.decode(z, tiling=tiling)
        got = parallel_decode(vae, z, tiling)
        results[name] = {"max_diff": (got - ref).abs().max().item(), "shape_ok": got.shape == ref.shape}
    # streaming in uneven parts gives the same frames
    parts = list(parallel_stream_decode(vae, [z[:, :, :1], z[:, :, 1:]], Tiling(32, 16)))
    results["stream"] = {"max_diff": (torch.cat(parts, 2) - vae.decode(z, tiling=Tiling(32, 16))).abs().max().item(),
                         "shape_ok": len(parts) == 3}
    report_and_exit(results)
