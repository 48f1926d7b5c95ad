"""VAE encode/decode and streaming memory vs diffusers: `scripts/bench.py --only vae,stream`, section `bench_vae`."""

import sys

from vidgen_lab.bench.run import main

if __name__ == "__main__":
    main(["--only", "vae,stream", "--section", "bench_vae", *sys.argv[1:]])
