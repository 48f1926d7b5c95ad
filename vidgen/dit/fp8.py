"""fp8 weight storage for the DiT's linear layers: half the bytes of bf16 weights, computed in bf16 (or fp32).

`quantize_fp8(dit)` swaps every `nn.Linear` of the transformer blocks for an `FP8Linear`: the weight is kept as
`float8_e4m3fn` with one fp32 scale per output channel (absmax / 448, 448 being e4m3's largest finite value), and is
dequantized to the compute dtype on every forward. Only the storage shrinks; the matmul runs in the compute dtype, so
this saves memory (the blocks hold nearly all of a DiT's weights), not time. Inference only: the quantized tensors
are buffers, not trainable parameters. Load weights first, then quantize; saving a quantized model is not supported.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from vidgen_kernels.ops import linear

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = torch.finfo(FP8_DTYPE).max  # 448.0


def _default_include(name: str) -> bool:
    # The blocks only: the patch, text and time embeddings, the time modulation and the head are a few percent of
    # the weights, and the time path and the head are precision-sensitive (Wan keeps them in fp32 even under bf16
    # autocast, see DiT.embed_time and Head.forward); the savings are in the N repeated blocks.
    return name.startswith("blocks.")


class FP8Linear(nn.Module):
    """y = x · (W_q · s)ᵀ + b with W_q `(out, in)` float8_e4m3fn and s `(out, 1)` fp32, computed in `compute_dtype`.

    Buffers (the state-dict keys): `weight` `(out, in)` fp8, `scale` `(out, 1)` fp32, `bias` `(out,)` in
    `compute_dtype` or absent. The output has the input's dtype, as `nn.Linear`'s does: the DiT runs its blocks in
    its own dtype, so in a bf16 DiT (compute dtype bf16) no dtype changes anywhere, and an fp32 DiT keeps its fp32
    residual stream while its block matmuls round through `compute_dtype`.
    """

    def __init__(
        self, weight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None, compute_dtype: torch.dtype
    ):
        super().__init__()
        if weight.dtype != FP8_DTYPE or weight.ndim != 2 or scale.shape != (weight.shape[0], 1):
            raise ValueError(
                f"FP8Linear needs a {FP8_DTYPE} weight (out, in) and a scale (out, 1); got weight "
                f"{weight.dtype} {tuple(weight.shape)} and scale {tuple(scale.shape)}; build one with "
                f"FP8Linear.from_linear"
            )
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        self.compute_dtype = compute_dtype
        self.register_buffer("weight", weight)
        self.register_buffer("scale", scale.float())
        self.register_buffer("bias", None if bias is None else bias.detach().to(compute_dtype))

    @classmethod
    def from_linear(cls, layer: nn.Linear, compute_dtype: torch.dtype = torch.bfloat16) -> "FP8Linear":
        """Quantize one linear layer: per output channel, W_q = round_e4m3(W / s) with s = absmax(W_row) / 448."""
        w = layer.weight.detach().float()  # (out, in)
        if not torch.isfinite(w).all():
            raise ValueError(f"cannot quantize a linear layer {tuple(w.shape)} with non-finite weights to fp8")
        absmax = w.abs().amax(dim=1, keepdim=True)  # (out, 1)
        scale = torch.where(absmax > 0, absmax / FP8_MAX, torch.ones_like(absmax))  # an all-zero row stays zero
        # The clamp keeps a rounding of absmax/s just above 448 from turning into NaN (e4m3fn has no infinity).
        q = (w / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
        return cls(q, scale, layer.bias, compute_dtype)

    def dequantized_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """W_q · s `(out, in)` in `dtype` (default: the compute dtype), the weight the forward multiplies by; in
        float32 it is W_q · s to fp32 precision, the reference the quantization error is measured against."""
        dtype = dtype or self.compute_dtype
        # Straight into `dtype` (s rounded to it first): one pass over the weight and no fp32 copy of it, which a
        # compiled block fuses into the matmul's producer. In bf16 the rounding of s is 2^-9, far below fp8's 2^-4.
        return self.weight.to(dtype) * self.scale.to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x `(..., in)` -> `(..., out)` in x's dtype."""
        bias = None if self.bias is None else self.bias.to(self.compute_dtype)
        return linear(x.to(self.compute_dtype), self.dequantized_weight(), bias).to(x.dtype)

    def _apply(self, fn, recurse=True):
        # `dit.to(torch.bfloat16)` or `.float()` after quantizing would cast the fp8 weight and the fp32 scale like
        # any floating-point tensor, silently undoing the quantization: keep their dtypes, follow only the device.
        before = {name: getattr(self, name) for name in ("weight", "scale")}
        super()._apply(fn, recurse)
        for name, old in before.items():
            new = getattr(self, name)
            if new.dtype != old.dtype:  # from the original, not back from `new`: a bf16 round trip would lose bits
                setattr(self, name, old.to(new.device))
        return self

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"weight={FP8_DTYPE}, compute_dtype={self.compute_dtype}")


def quantize_fp8(
    module: nn.Module,
    compute_dtype: torch.dtype = torch.bfloat16,
    *,
    include: Callable[[str], bool] | None = None,
) -> nn.Module:
    """Replace, in place, each `nn.Linear` of `module` whose qualified name passes `include` by an `FP8Linear`;
    returns `module`.

    `include(name)` gets names as in `module.named_modules()` ("blocks.0.self_attn.qkv", "head.proj"); without it,
    every linear inside `module.blocks` is quantized and nothing else. Checks everything before changing anything.
    """
    if not (isinstance(compute_dtype, torch.dtype) and compute_dtype.is_floating_point and compute_dtype.itemsize >= 2):
        raise ValueError(f"compute_dtype must be a 16- or 32-bit floating-point dtype such as torch.bfloat16, "
                         f"got {compute_dtype!r}")
    if include is None:
        if not isinstance(getattr(module, "blocks", None), nn.ModuleList):
            raise ValueError(
                f"quantize_fp8 quantizes the transformer blocks of a DiT (`module.blocks`, an nn.ModuleList); "
                f"{type(module).__name__} has none. Pass include=lambda name: ... to choose linear layers by name"
            )
        include = _default_include
    chosen = [(name, m) for name, m in module.named_modules() if isinstance(m, nn.Linear) and include(name)]
    if not chosen:
        done = sum(isinstance(m, FP8Linear) for m in module.modules())
        hint = (f"it already holds {done} FP8Linear layers (quantize once)" if done
                else "no nn.Linear layer's name passed `include`")
        raise ValueError(f"quantize_fp8 found no linear layers to quantize in {type(module).__name__}: {hint}")
    for name, layer in chosen:  # check every layer first, so a bad one leaves the module untouched
        if not torch.isfinite(layer.weight).all():
            raise ValueError(f"cannot quantize {name}: its weight has non-finite values")
    for name, layer in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, child, FP8Linear.from_linear(layer, compute_dtype))
    return module


def parameter_bytes(module: nn.Module) -> int:
    """Bytes held by `module`'s parameters and buffers (Σ numel · element size)."""
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)
