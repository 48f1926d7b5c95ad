"""Benchmark vidgen against diffusers on the same work: DiT forward, a guided pipeline step, VAE encode/decode and
streaming, and the step cache's trade-off; writes the `bench` section of docs/benchmarks.md.

    python scripts/bench.py [--device cuda] [--threads N] [--only dit,step,vae,stream,cache] [--quick]
"""

from vidgen_lab.bench.run import main

if __name__ == "__main__":
    main()
