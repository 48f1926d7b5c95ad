"""vidgen_kernels: the attention backend and fused ops, each with a pure-PyTorch reference.

Named `vidgen_kernels` (not `kernels`) so it can never shadow the PyPI package `kernels` that diffusers may import.
Depends on torch only; FlashAttention and Triton paths are optional.
"""
