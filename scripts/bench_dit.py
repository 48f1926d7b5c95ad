"""DiT forward and guided step vs diffusers: `scripts/bench.py --only dit,step`, written to section `bench_dit`."""

import sys

from vidgen_lab.bench.run import main

if __name__ == "__main__":
    main(["--only", "dit,step", "--section", "bench_dit", *sys.argv[1:]])
