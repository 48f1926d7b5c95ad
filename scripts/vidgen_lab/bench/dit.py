"""DiT forward and one guided denoising step, ours vs diffusers, on the same config, weights and inputs.

The step is what a generation repeats N times: ours is `VideoPipeline`'s model (both guidance branches in one batched
forward) under `sample_euler`; the reference is `WanPipeline`'s loop body: two `WanTransformer3DModel` forwards
(conditional, unconditional), the guidance mix and `FlowMatchEulerDiscreteScheduler.step`.

Text is fed as `WanPipeline` feeds it: `_get_t5_prompt_embeds` tokenizes to `max_sequence_length` (512 in `__call__`),
keeps the hidden states of the real tokens (attention mask) and zero-pads them back to 512 rows. The negative prompt ""
is encoded the same way; T5 appends its end-of-sequence token, so "" is one real row and 511 zero rows. Here a prompt is
PROMPT_ROWS random rows (a sentence of about 20 words in T5 tokens) and the empty prompt one random row, both padded;
one case keeps every row random (no padding) to show that case too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from vidgen_lab.bench.common import DTYPES, Row, peak_of, rel_diff, time_pair
from vidgen.dit.config import DiTConfig
from vidgen.dit.model import DiT


WAN_TEXT_LEN = 512  # rows of text hidden states WanPipeline passes the transformer
PROMPT_ROWS = 24  # real rows of the benchmarked prompt; the rest is zero padding
EMPTY_PROMPT_ROWS = 1  # "" through T5: its end-of-sequence token


@dataclass(frozen=True)
class DiTCase:
    config: DiTConfig
    latent: tuple[int, int, int, int]  # (C, F, h, w)
    text_len: int
    prompt_rows: int | None = PROMPT_ROWS  # real rows of the prompt, zero-padded to text_len; None: all rows random

    @property
    def tokens(self) -> int:
        c, f, h, w = self.latent
        pt, ph, pw = self.config.patch_size
        return (f // pt) * (h // ph) * (w // pw)

    @property
    def text(self) -> str:
        if self.prompt_rows is None:
            return f"text {self.text_len} random rows, unpadded"
        return f"text {self.prompt_rows} rows zero-padded to {self.text_len}"

    @property
    def text_rows_ours(self) -> int:
        """Text rows our DiT embeds and attends: the prompt and one zero row for all the padding."""
        return self.text_len if self.prompt_rows is None else min(self.text_len, self.prompt_rows + 1)


_MEDIUM = DiTConfig(dim=512, ffn_dim=2048, num_heads=8, num_layers=2, text_dim=256, text_len=WAN_TEXT_LEN)
CASES = {
    # the embedded default model's size (its own pipeline pads to 64 rows; here to Wan's 512): per-op overhead shows
    "shapes": DiTCase(dataclasses.replace(DiTConfig.preset("shapes"), text_len=WAN_TEXT_LEN), (16, 5, 8, 8),
                      WAN_TEXT_LEN),
    # wider and longer: matmuls and attention dominate
    "medium": DiTCase(_MEDIUM, (16, 5, 16, 16), WAN_TEXT_LEN),
    # no padding to drop: the same arithmetic on both sides
    "medium_unpadded": DiTCase(dataclasses.replace(_MEDIUM, text_len=64), (16, 5, 16, 16), 64, prompt_rows=None),
}
GUIDANCE = 5.0
SHIFT = 3.0
STEPS = 20  # the schedule the benchmarked step is taken from (its middle step)


def build_pair(config: DiTConfig, dtype: torch.dtype, device) -> tuple[DiT, torch.nn.Module]:
    """Our model and diffusers' `WanTransformer3DModel` on identical random weights."""
    from diffusers import WanTransformer3DModel
    from diffusers.utils import logging as diffusers_logging

    from vidgen.dit.checkpoint import export_config, export_state_dict

    diffusers_logging.set_verbosity_error()  # it warns that some modules "should be kept in fp32": compared as-is
    torch.manual_seed(0)
    ours = DiT(config).eval()
    kwargs = {k: v for k, v in export_config(config, "diffusers").items() if not k.startswith("_")}
    theirs = WanTransformer3DModel(**kwargs).eval()
    theirs.load_state_dict(export_state_dict(ours, "diffusers"))
    return ours.to(device, dtype), theirs.to(device, dtype)


def inputs(case: DiTCase, dtype: torch.dtype, device, seed: int = 1):
    """Latent (1, C, F, h, w), t (1,), conditional and unconditional text (1, L, text_dim), the texts zero-padded as
    WanPipeline pads them (see the module docstring) unless the case is unpadded."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, *case.latent, generator=g)
    cond, uncond = (torch.randn(1, case.text_len, case.config.text_dim, generator=g) for _ in range(2))
    if case.prompt_rows is not None:
        cond[:, case.prompt_rows:] = 0
        uncond[:, EMPTY_PROMPT_ROWS:] = 0
    return x.to(device, dtype), torch.tensor([500.0], device=device), cond.to(device, dtype), uncond.to(device, dtype)


def forward_flops(case: DiTCase) -> float:
    """Multiply-adds × 2 of the matmuls and attention of one forward of ours (element-wise ops not counted): the text
    side over the rows it computes (`text_rows_ours`), so the GFLOP/s column stays a measure of efficiency."""
    c, s, l = case.config, case.tokens, case.text_rows_ours
    d = c.dim
    per_block = 2 * s * d * 4 * d + 4 * s * s * d  # q,k,v,o projections; QKᵀ and AV
    per_block += 2 * s * d * 2 * d + 2 * l * d * 2 * d + 4 * s * l * d  # cross q,o; k,v on text; attention
    per_block += 4 * s * d * c.ffn_dim
    return c.num_layers * per_block + 2 * l * d * (c.text_dim + d)


def matmul_flops_per_s(case: DiTCase, dtype: torch.dtype, device) -> float:
    """FLOP/s of a (tokens × dim) @ (dim × ffn_dim) product, the model's largest matmul, through the same linear the
    model uses (`vidgen_kernels.ops.linear`): the practical ceiling for these shapes on this machine."""
    from vidgen_kernels.ops import linear

    c = case.config
    a = torch.randn(case.tokens, c.dim, device=device).to(dtype)
    w = torch.randn(c.ffn_dim, c.dim, device=device).to(dtype)
    seconds = time_pair({"mm": lambda: linear(a, w)}, torch.device(device), repeats=7)["mm"]
    return 2 * case.tokens * c.dim * c.ffn_dim / seconds


# ---- one forward --------------------------------------------------------------------------------------------------

def forward_fns(case: DiTCase, dtype: torch.dtype, device):
    ours, theirs = build_pair(case.config, dtype, device)
    x, t, ctx, _ = inputs(case, dtype, device)
    return {"ours": lambda: ours(x, t, ctx), "diffusers": lambda: theirs(x, t, ctx, return_dict=False)[0]}


def forward_peak(case_name: str, dtype_name: str, which: str, device: str) -> float:
    """In a fresh process: peak memory growth of one forward, MiB (weights excluded)."""
    fns = forward_fns(CASES[case_name], DTYPES[dtype_name], device)
    return peak_of(fns[which], torch.device(device))


def bench_forward(case_name: str, dtype_name: str, device, repeats: int, memory) -> Row:
    """`memory(fn, *args)` runs `fn` in a fresh process and returns its result (`run_isolated`), or None to skip."""
    case, dtype = CASES[case_name], DTYPES[dtype_name]
    fns = forward_fns(case, dtype, device)
    with torch.no_grad():
        diff = rel_diff(fns["ours"](), fns["diffusers"]())
    times = time_pair(fns, device, repeats)
    row = Row(f"DiT forward, {case_name} ({case.tokens} tokens, {case.text})", dtype_name, times["ours"], times["diffusers"], diff,
              flops=forward_flops(case), matmul_flops_per_s=matmul_flops_per_s(case, dtype, device))
    if memory is not None:
        row.ours_mib, row.ref_mib = (memory(forward_peak, case_name, dtype_name, w, str(device))
                                     for w in ("ours", "diffusers"))
    return row


# ---- one guided denoising step ------------------------------------------------------------------------------------

def step_fns(case: DiTCase, dtype: torch.dtype, device):
    """Ours and the reference taking the same latents x (fp32) through step STEPS // 2 of the same Euler schedule
    -> ({name: step}, x)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from vidgen.samplers import sample_euler
    from vidgen.velocity import TextContexts, guided_velocity

    ours, theirs = build_pair(case.config, dtype, device)
    x, _, cond, uncond = inputs(case, dtype, device)
    x = x.float()
    scheduler = FlowMatchEulerDiscreteScheduler(shift=SHIFT)
    scheduler.set_timesteps(STEPS, device=device)
    i = STEPS // 2
    sigmas, t = scheduler.sigmas[i:i + 2].float().cpu(), scheduler.timesteps[i]

    model, _ = guided_velocity(ours, TextContexts(cond, uncond), GUIDANCE)  # both branches in one forward

    def ours_step():
        return sample_euler(model, x, sigmas)

    def diffusers_step():
        scheduler._step_index = None  # step() advances it; start from step i on every call
        lat = x.to(dtype)
        v = theirs(hidden_states=lat, timestep=t.expand(1), encoder_hidden_states=cond, return_dict=False)[0]
        v_u = theirs(hidden_states=lat, timestep=t.expand(1), encoder_hidden_states=uncond, return_dict=False)[0]
        v = v_u + GUIDANCE * (v - v_u)
        return scheduler.step(v, t, x, return_dict=False)[0]

    return {"ours": ours_step, "diffusers": diffusers_step}, x


def step_peak(case_name: str, dtype_name: str, which: str, device: str) -> float:
    fns, _ = step_fns(CASES[case_name], DTYPES[dtype_name], device)
    return peak_of(fns[which], torch.device(device))


def bench_step(case_name: str, dtype_name: str, device, repeats: int, memory) -> Row:
    case, dtype = CASES[case_name], DTYPES[dtype_name]
    fns, x = step_fns(case, dtype, device)
    with torch.no_grad():
        diff = rel_diff(fns["ours"]() - x, fns["diffusers"]() - x)  # of the update, not of x itself
    times = time_pair(fns, device, repeats)
    row = Row(f"guided Euler step (CFG {GUIDANCE:g}), {case_name} ({case.text})", dtype_name, times["ours"], times["diffusers"],
              diff, flops=2 * forward_flops(case), matmul_flops_per_s=matmul_flops_per_s(case, dtype, device))
    if memory is not None:
        row.ours_mib, row.ref_mib = (memory(step_peak, case_name, dtype_name, w, str(device))
                                     for w in ("ours", "diffusers"))
    return row
