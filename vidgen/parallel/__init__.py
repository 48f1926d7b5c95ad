"""Scale-out on torch.distributed: an explicit parallel context, sequence parallelism for the DiT, guidance and
data parallelism for generation, and parallel VAE decoding. Nothing here runs at import time."""

from vidgen.parallel.context import ParallelContext, init_distributed

__all__ = ["ParallelContext", "init_distributed"]
