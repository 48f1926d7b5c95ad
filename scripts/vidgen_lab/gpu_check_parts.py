"""The five measurements of `scripts/gpu_check.py`, each `part(sizes, device, budget) -> Results`.

Sizes come from `vidgen_lab.gpu_check.Sizes`: full Wan sizes on a GPU, tiny ones for `--dry-run` on CPU. How a
measurement is guarded, timed and its memory read: `vidgen_lab.gpu_check_measure`.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from vidgen_lab.bench import dit as bench_dit
from vidgen_lab.bench.common import DTYPES, rel_diff, synchronize
from vidgen_lab.gpu_check_measure import (Budget, Results, diffusers_missing, free_memory, matmul_tflops, one_call,
                                          time_fns)

ROOT = Path(__file__).resolve().parents[2]
# Today's CUDA-only tests: the ones skipped without a GPU (`skipif(not torch.cuda.is_available())`).
CUDA_TESTS = ("tests/test_kernels.py", "-k", "cuda")
# Parity bounds, relative difference of outputs on the same weights (TF32 off for fp32): bf16 leaves room for one
# rounding of every activation, more in the VAE's deep stack of convolutions.
PARITY_BOUND = {("dit", "fp32"): 1e-4, ("dit", "bf16"): 3e-2, ("vae", "fp32"): 1e-4, ("vae", "bf16"): 6e-2}
WAN_PUBLISHED_14B_720P_S = 1838.0  # Wan 2.1's published time for 14B text-to-video at 720p on one H100/H800
PUBLISHED_STEPS = 50
MEMORY_MODES = ("none", "fp8", "offload_model", "offload_blocks", "compile")


# ---- 1. the CUDA tests and parity with diffusers --------------------------------------------------------------------

def run_cuda_tests(budget: Budget) -> dict:
    """`pytest -q tests/test_kernels.py -k cuda` in a subprocess -> its counts (passed, failed, skipped, ...)."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *CUDA_TESTS]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=max(10.0, budget.left()))
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    summary = lines[-1] if lines else ""
    counts = {word.rstrip("s") if word == "errors" else word: int(n) for n, word in
              re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed|xpassed)", summary)}
    out = {"command": " ".join(cmd[1:]), "returncode": proc.returncode, "summary": summary, "counts": counts}
    if not torch.cuda.is_available():
        out["note"] = "no CUDA device here: the CUDA tests skip"
    if proc.returncode not in (0, 5):  # 5: nothing collected
        out["status"] = "failed"
        out["tail"] = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
    return out


@contextlib.contextmanager
def no_tf32():
    """fp32 as fp32: cuDNN convolutions default to TF32 (10-bit mantissa), which would swamp an fp32 comparison."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def dit_parity(dtype_name: str, device: torch.device) -> dict:
    """Our DiT vs WanTransformer3DModel, one forward on the same weights and inputs (bench's `shapes` case)."""
    case, dtype = bench_dit.CASES["shapes"], DTYPES[dtype_name]
    ours, theirs = bench_dit.build_pair(case.config, dtype, device)
    x, t, ctx, _ = bench_dit.inputs(case, dtype, device)
    with torch.no_grad(), no_tf32():
        diff = rel_diff(ours(x, t, ctx), theirs(x, t, ctx, return_dict=False)[0])
    return _bounded(diff, "dit", dtype_name, tokens=case.tokens)


def vae_parity(dtype_name: str, device: torch.device) -> dict:
    """Our VAE vs AutoencoderKLWan, encode and decode on the same weights (bench's tiny VAE)."""
    from vidgen_lab.bench import vae as bench_vae

    cfg, shape = bench_vae.BF16_CONFIG, bench_vae.BF16_VIDEO
    with tempfile.TemporaryDirectory() as tmp:
        bench_vae.save_reference(cfg, tmp)
        ours, ref = (bench_vae.op_fns(impl, tmp, cfg, shape, DTYPES[dtype_name], device)
                     for impl in ("ours", "diffusers"))
        with torch.no_grad(), no_tf32():
            diffs = {op: rel_diff(ours[op](), ref[op]()) for op in ("encode", "decode")}
    out = _bounded(max(diffs.values()), "vae", dtype_name, video=list(shape))
    return {**out, "rel_diff_encode": diffs["encode"], "rel_diff_decode": diffs["decode"]}


def _bounded(diff: float, model: str, dtype_name: str, **extra) -> dict:
    bound = PARITY_BOUND[model, dtype_name]
    return {"rel_diff": diff, "bound": bound, **extra, **({} if diff <= bound else {"status": "mismatch"})}


def cuda_tests_and_parity(sizes, device: torch.device, budget: Budget) -> dict:
    r = Results(budget)
    r.run("cuda_tests", lambda: run_cuda_tests(budget), needs=10)
    missing = diffusers_missing()
    for dtype_name in sizes.parity_dtypes_dit:
        r.run(f"dit_parity_{dtype_name}", lambda: _need(missing) or dit_parity(dtype_name, device), needs=2)
    for dtype_name in sizes.parity_dtypes_vae:
        r.run(f"vae_parity_{dtype_name}", lambda: _need(missing) or vae_parity(dtype_name, device), needs=2)
    return r


def _need(missing: str | None) -> None:
    if missing:
        raise ImportError(missing)


# ---- 2. Wan 2.1 1.3B at full size, ours vs diffusers -----------------------------------------------------------

def forward_flops(case: bench_dit.DiTCase) -> dict:
    """FLOPs of one forward, by formula and by `vidgen.parallel.scaling` (which counts differently: see the note)."""
    from vidgen.parallel.scaling import rank_costs

    c = case.config
    grid = tuple(n // p for n, p in zip(case.latent[1:], c.patch_size))
    full_text = bench_dit.DiTCase(c, case.latent, case.text_len, prompt_rows=None)
    scaling = rank_costs(dataclasses.replace(c, text_len=case.text_len), case.latent[1:], 1).flops_per_rank
    return {
        "formula": "per block 2·S·(4·D² + 2·D·FFN) + 4·S²·D + cross (4·S·D² + 4·L·D² + 4·S·L·D), times "
                   "blocks, plus the text embedding; S tokens, L text rows computed, D width",
        "tokens": case.tokens, "grid": list(grid), "text_rows_computed": case.text_rows_ours,
        "per_forward": bench_dit.forward_flops(case),
        "per_forward_all_text_rows": bench_dit.forward_flops(full_text),
        "scaling_py": scaling,
        "scaling_note": "vidgen.parallel.scaling counts 2·params·S (so the text K/V projections over all S tokens "
                        "instead of L rows) plus 4·S·(S + text_len)·D per block: compare with "
                        "per_forward_all_text_rows",
    }


def attention_backend(dtype: torch.dtype, device: torch.device) -> dict:
    """The backend `vidgen_kernels.attention.attention(backend="auto")` picks for this device and dtype."""
    from vidgen_kernels import attention as attn

    probe = torch.zeros(1, 1, 1, 64, device=device, dtype=dtype)
    out = {"auto_picks": attn._auto_backend(probe), "available": attn.available_backends()}
    if device.type == "cuda":  # which of SDPA's own kernels it may choose from
        b = torch.backends.cuda
        out["sdpa_enabled"] = {"flash": b.flash_sdp_enabled(), "mem_efficient": b.mem_efficient_sdp_enabled(),
                               "cudnn": b.cudnn_sdp_enabled(), "math": b.math_sdp_enabled()}
    return out


def build_pair_on(config, dtype: torch.dtype, device: torch.device, with_reference: bool):
    """Ours and (with_reference) diffusers' transformer on the same random weights, built directly on `device`."""
    from vidgen.dit.model import DiT

    with torch.device(device):
        if with_reference:
            return bench_dit.build_pair(config, dtype, device)
        torch.manual_seed(0)
        return DiT(config).eval().to(device, dtype), None


def wan_1_3b(sizes, device: torch.device, budget: Budget) -> dict:
    r = Results(budget)
    case = bench_dit.DiTCase(sizes.dit_config(), sizes.dit_latent, bench_dit.WAN_TEXT_LEN)
    dtype = DTYPES[sizes.dit_dtype]
    missing = diffusers_missing()
    r["setup"] = {"preset": sizes.dit_preset, "dtype": sizes.dit_dtype, "latent": [1, *case.latent],
                  "tokens": case.tokens, "text": case.text, "guidance": bench_dit.GUIDANCE,
                  **({"note": missing + "; ours only"} if missing else {})}
    r.run("attention_backend", lambda: attention_backend(dtype, device))
    flops = r.run("flops", lambda: forward_flops(case))
    mm = r.run("matmul", lambda: matmul_tflops(sizes.matmul_n, dtype, device), needs=2)
    models = {}
    r.run("build", lambda: _build_into(models, case.config, dtype, device, missing is None), needs=5)
    if "ours" not in models and missing is None:  # diffusers' model failed to build: measure ours alone
        r.run("build_ours_only", lambda: _build_into(models, case.config, dtype, device, False), needs=5)
    if "ours" not in models:
        return r
    ours, theirs = models["ours"], models.get("diffusers")
    x, t, cond, uncond = bench_dit.inputs(case, dtype, device)

    def forward():
        fns = {"ours": lambda: ours(x, t, cond)}
        if theirs is not None:
            fns["diffusers"] = lambda: theirs(x, t, cond, return_dict=False)[0]
        out = _compare(fns, device, sizes.repeats)
        if flops.get("per_forward") and out["ours"].get("seconds"):
            out["ours"]["tflops"] = flops["per_forward"] / out["ours"]["seconds"] / 1e12
            if mm.get("tflops"):
                out["ours"]["of_matmul"] = out["ours"]["tflops"] / mm["tflops"]
        return out

    r.run("forward", forward, needs=sizes.needs_dit_call * (2 + sizes.repeats) * (1 + (theirs is not None)))
    r.run("guided_step", lambda: _compare(step_fns(ours, theirs, x, cond, uncond), device, sizes.repeats,
                                          diff_of_update=x.float()),
          needs=2 * sizes.needs_dit_call * (2 + sizes.repeats) * (1 + (theirs is not None)))
    models.clear()
    return r


def _build_into(models: dict, config, dtype, device, with_reference: bool) -> dict:
    t0 = time.perf_counter()
    models["ours"], theirs = build_pair_on(config, dtype, device, with_reference)
    if theirs is not None:
        models["diffusers"] = theirs
    params = sum(p.numel() for p in models["ours"].parameters())
    return {"seconds": time.perf_counter() - t0, "params": params}


def _compare(fns: dict, device: torch.device, repeats: int, diff_of_update: torch.Tensor | None = None) -> dict:
    """Time (alternating), peak memory (one call each) and the outputs' relative difference of ours vs diffusers."""
    out = {}
    if "diffusers" in fns:
        with torch.no_grad():
            a, b = fns["ours"](), fns["diffusers"]()
            if diff_of_update is not None:  # a sampler step: compare the update, not x itself
                a, b = a - diff_of_update, b - diff_of_update
            out["rel_diff"] = rel_diff(a, b)
            del a, b
    times = time_fns(fns, device, repeats, warmup=0 if "diffusers" in fns else 1)
    for name, fn in fns.items():
        out[name] = {**one_call(fn, device), "seconds": times[name]}
        free_memory()
    if "diffusers" in fns:
        out["time_ratio"] = out["ours"]["seconds"] / out["diffusers"]["seconds"]
        if out["ours"]["peak_growth_mib"] is not None and out["diffusers"]["peak_growth_mib"]:
            out["peak_growth_ratio"] = out["ours"]["peak_growth_mib"] / out["diffusers"]["peak_growth_mib"]
    return out


def step_fns(ours, theirs, x, cond, uncond) -> dict:
    """One guided Euler step (both branches) of ours (`guided_velocity` + `sample_euler`) and, with `theirs`,
    `WanPipeline`'s loop body, as in `vidgen_lab.bench.dit.step_fns` but on models already built."""
    from vidgen.flow import sigma_schedule
    from vidgen.samplers import sample_euler
    from vidgen.velocity import TextContexts, guided_velocity

    i, x = bench_dit.STEPS // 2, x.float()
    model, _ = guided_velocity(ours, TextContexts(cond, uncond), bench_dit.GUIDANCE)
    if theirs is None:
        sigmas = sigma_schedule(bench_dit.STEPS, bench_dit.SHIFT)[i:i + 2].float().cpu()
        return {"ours": lambda: sample_euler(model, x, sigmas)}
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler(shift=bench_dit.SHIFT)
    scheduler.set_timesteps(bench_dit.STEPS, device=x.device)
    sigmas, t = scheduler.sigmas[i:i + 2].float().cpu(), scheduler.timesteps[i]
    dtype = cond.dtype

    def diffusers_step():
        scheduler._step_index = None  # step() advances it; start from step i on every call
        lat = x.to(dtype)
        v = theirs(hidden_states=lat, timestep=t.expand(1), encoder_hidden_states=cond, return_dict=False)[0]
        v_u = theirs(hidden_states=lat, timestep=t.expand(1), encoder_hidden_states=uncond, return_dict=False)[0]
        return scheduler.step(v_u + bench_dit.GUIDANCE * (v - v_u), t, x, return_dict=False)[0]

    return {"ours": lambda: sample_euler(model, x, sigmas), "diffusers": diffusers_step}


# ---- 3. VAE decode of 21 latent frames at 480×832 --------------------------------------------------------------

def vae_decode(sizes, device: torch.device, budget: Budget) -> dict:
    from causal_vae import CausalVAE
    from causal_vae.config import preset

    r = Results(budget)
    cfg, dtype = preset(sizes.vae_preset), DTYPES[sizes.vae_dtype]
    missing = diffusers_missing()
    _, f, h, w = sizes.vae_latent
    pixels = [1, 3, 1 + cfg.temporal_compression * (f - 1), h * cfg.spatial_compression, w * cfg.spatial_compression]
    r["setup"] = {"preset": sizes.vae_preset, "dtype": sizes.vae_dtype, "latent": [1, *sizes.vae_latent],
                  "pixels": pixels,
                  **({"note": missing + "; ours only"} if missing else {})}
    g = torch.Generator().manual_seed(0)
    z = torch.randn(1, *sizes.vae_latent, generator=g).to(device, dtype)  # normalised latents, as the DiT makes
    with tempfile.TemporaryDirectory() as tmp:
        models = {}

        def load():
            from vidgen_lab.bench import vae as bench_vae

            t0 = time.perf_counter()
            if missing:
                torch.manual_seed(0)
                models["ours"] = CausalVAE(cfg).to(device, dtype).eval()
            else:
                bench_vae.save_reference(cfg, tmp)
                for impl in ("ours", "diffusers"):
                    models[impl] = bench_vae.load(impl, tmp, dtype, device)
            return {"seconds": time.perf_counter() - t0}

        r.run("load", load, needs=5)
        ours, ref = models.get("ours"), models.get("diffusers")
        if ours is None:
            return r
        mean, std = ours.latent_stats(device)
        raw = (z.float() * std + mean).to(dtype)

        def stream(latents):
            for _ in ours.stream_decode(latents[:, :, i:i + 1] for i in range(latents.shape[2])):
                pass  # each pixel chunk is dropped as it comes, as a writer would

        def ref_decode(latents, tiled: bool):
            if tiled:
                ref.enable_tiling()
            try:
                return ref.decode(latents).sample
            finally:
                ref.disable_tiling()

        def warm():  # cuDNN picks its kernels on the first call of each shape: 2 latent frames, full size
            one_call(lambda: stream(z[:, :, :2]), device)
            if ref is not None:
                for tiled in (False, True):
                    one_call(lambda: ref_decode(raw[:, :, :2], tiled), device)
            return {}

        r.run("warmup", warm, needs=sizes.needs_vae_call / 4)
        r.run("ours_stream_decode", lambda: one_call(lambda: stream(z), device), needs=sizes.needs_vae_call)
        if ref is not None:
            r.run("diffusers_decode", lambda: one_call(lambda: ref_decode(raw, False), device),
                  needs=sizes.needs_vae_call)
            r.run("diffusers_tiled_decode", lambda: one_call(lambda: ref_decode(raw, True), device),
                  needs=sizes.needs_vae_call)
        models.clear()
    return r


# ---- 4. one Wan 2.1 14B block at 720p ------------------------------------------------------------------------------

def wan_14b_block(sizes, device: torch.device, budget: Budget) -> dict:
    from vidgen.dit.model import DiTBlock, TokenLayout
    from vidgen.dit.config import DiTConfig
    from vidgen_kernels.ops import rope_angles, rope_rotation

    r = Results(budget)
    cfg, dtype = DiTConfig.preset(sizes.block_preset), DTYPES[sizes.dit_dtype]
    grid = tuple(n // p for n, p in zip(sizes.block_latent[1:], cfg.patch_size))
    s, d = math.prod(grid), cfg.dim
    rows = bench_dit.PROMPT_ROWS + 1  # the prompt's rows and one zero row standing for the padding
    r["setup"] = {"preset": sizes.block_preset, "dtype": sizes.dit_dtype, "latent": [1, *sizes.block_latent],
                  "tokens": s, "blocks_in_model": cfg.num_layers, "text_rows_computed": rows}

    def run():
        torch.manual_seed(0)
        with torch.device(device):
            block = DiTBlock(cfg).eval().to(dtype)
            x = torch.randn(1, s, d).to(dtype)
            time_mod = torch.randn(1, 1, 6, d)  # fp32, as DiT.embed_time returns it
            context = torch.randn(1, rows, d).to(dtype)
        repeats = torch.tensor([1] * bench_dit.PROMPT_ROWS + [bench_dit.WAN_TEXT_LEN - bench_dit.PROMPT_ROWS],
                               device=device)
        layout = TokenLayout((s,), context_repeats=repeats)
        rope = rope_rotation(rope_angles(cfg.head_dim, grid, cfg.rope_theta, device=device))
        fn = lambda: block(x, time_mod, context, rope, layout)  # noqa: E731
        seconds = time_fns({"block": fn}, device, sizes.repeats + 1)["block"]
        out = {**one_call(fn, device), "seconds": seconds}
        flops = 2 * s * (4 * d * d + 2 * d * cfg.ffn_dim) + 4 * s * s * d + 4 * s * d * d + 4 * rows * d * d \
            + 4 * s * rows * d
        total = seconds * PUBLISHED_STEPS * 2 * cfg.num_layers
        return {**out, "flops": flops, "tflops": flops / seconds / 1e12,
                "extrapolated_s": total,
                "extrapolation": f"{PUBLISHED_STEPS} steps × 2 guidance branches × {cfg.num_layers} blocks "
                                 "(DiT blocks only: no text encoder, VAE, embeddings or head)",
                "wan_published_s": WAN_PUBLISHED_14B_720P_S,
                "wan_published": "Wan 2.1's published figure: 14B text-to-video, 720p, one H100/H800 GPU"}

    r.run("block_forward", run, needs=sizes.needs_block_call * (sizes.repeats + 3))
    return r


# ---- 5. memory modes at 1.3B / 480p ----------------------------------------------------------------------------

def apply_mode(mode: str, dit, device: torch.device, compile_backend: str):
    """Make `dit` (on CPU) run on `device` in `mode`, in place; ImportError while the mode's function is missing."""
    if mode == "none":
        dit.to(device)
    elif mode == "fp8":
        from vidgen.dit.fp8 import quantize_fp8

        quantize_fp8(dit.to(device))
    elif mode == "offload_model":
        from vidgen.offload import enable_model_offload

        enable_model_offload([dit], device)
    elif mode == "offload_blocks":
        from vidgen.offload import enable_block_offload

        enable_block_offload(dit, device, resident=2)
    elif mode == "compile":
        from vidgen.dit.compile import compile_blocks

        compile_blocks(dit.to(device), backend=compile_backend)
    else:
        raise ValueError(f"unknown memory mode {mode!r}; expected one of {MEMORY_MODES}")


def memory_modes(sizes, device: torch.device, budget: Budget) -> dict:
    from vidgen.dit.model import DiT

    r = Results(budget)
    case = bench_dit.DiTCase(sizes.dit_config(), sizes.dit_latent, bench_dit.WAN_TEXT_LEN)
    dtype = DTYPES[sizes.dit_dtype]
    r["setup"] = {"preset": sizes.dit_preset, "dtype": sizes.dit_dtype, "latent": [1, *case.latent],
                  "tokens": case.tokens, "compile_backend": sizes.compile_backend,
                  "work": "one guided Euler step, both branches in one batched forward",
                  "peak": "max_memory_allocated over one step, weights on the GPU included"}
    with torch.device(device):  # random init is much faster on the GPU; the copy kept between modes lives on CPU
        torch.manual_seed(0)
        base = DiT(case.config).eval().to(dtype)
    base = base.cpu()
    x, _, cond, uncond = bench_dit.inputs(case, dtype, device)
    for mode in MEMORY_MODES:
        needs = sizes.needs_dit_call * 2 * (3 + sizes.repeats) + (sizes.needs_compile if mode == "compile" else 0)
        r.run(mode, lambda: _one_mode(mode, base, device, x, cond, uncond, sizes), needs=needs)
    return r


def _one_mode(mode, base, device, x, cond, uncond, sizes) -> dict:
    dit = copy.deepcopy(base)
    apply_mode(mode, dit, device, sizes.compile_backend)
    synchronize(device)
    resident = torch.cuda.memory_allocated(device) / 2**20 if device.type == "cuda" else None
    step = step_fns(dit, None, x, cond, uncond)["ours"]
    first = one_call(step, device)  # compiles, for `compile`
    seconds = time_fns({"step": step}, device, sizes.repeats, warmup=0)["step"]
    out = {**one_call(step, device), "seconds": seconds, "first_call_s": first["seconds"], "resident_mib": resident}
    del dit, step
    return out
