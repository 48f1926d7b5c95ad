"""Side-by-side benchmarks against diffusers (the reference implementation), driven by `scripts/bench.py`.

- `vidgen_lab.bench.common`: devices, the result row and its table.
- `vidgen_lab.bench.dit`: DiT forward and one guided pipeline step vs `WanTransformer3DModel` (+ its Euler scheduler).
- `vidgen_lab.bench.vae`: VAE encode / decode / streaming decode vs `AutoencoderKLWan`.
- `vidgen_lab.bench.step_cache`: the step cache's speed/quality trade-off.
- `vidgen_lab.bench.run`: the command line (`main(argv)`), which writes docs/benchmarks.md.
"""
