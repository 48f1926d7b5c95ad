"""vidgen_kernels: the attention backend and fused ops, each with a pure-PyTorch reference.

Named `vidgen_kernels` (not `kernels`) so it can never shadow the PyPI package `kernels` that diffusers may import.
Depends on torch only; FlashAttention and Triton paths are optional.

- `vidgen_kernels.attention`: `attention(q, k, v, cu_seqlens_q=None, cu_seqlens_k=None, ...)` and its reference.
- `vidgen_kernels.ops`: `rms_norm`, `modulate`, `rope_angles`, `apply_rope` and references.
"""
