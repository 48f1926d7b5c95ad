"""Memory modes for GPUs that cannot hold the whole pipeline; inference only, off unless asked for.

Model offload (`enable_model_offload`): the components (text encoder, DiT, VAE) live on the CPU and take turns on the
GPU: a component moves there when its forward starts, and sends the one that ran before it back to the CPU. The GPU
then holds one component at a time, at the cost of one move per component per call.

Block offload (`enable_block_offload`): the DiT's small parts stay on the GPU and its transformer blocks stay in pinned
CPU memory. Each block is copied in on a side CUDA stream while the blocks before it compute, and dropped after its
forward, so the GPU holds at most `resident` blocks at a time. The copies are exact, so outputs do not change.

Both work by forward hooks on the modules that run and by moving tensors' `.data`; a module's own code is untouched.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

OFFLOAD_DEVICE = torch.device("cpu")


# --- model offload ------------------------------------------------------------------------------------------------


class ModelOffload:
    """Components that take turns on `device` (see `enable_model_offload`).

    Holds `components` (in the order given), `device` (where a component runs; tensor inputs of its entry points are
    moved there, its outputs stay there), `active` (the index of the component on `device` now, None when none is)
    and `activations` (the index of every component brought onto `device`, in order: a text-to-video call records
    text encoder, DiT, VAE)."""

    def __init__(self, components: list[nn.Module], device: str | torch.device):
        self.components = tuple(components)
        self.device = torch.device(device)
        self.active: int | None = None
        self.activations: list[int] = []
        for module in self.components:
            module.to(OFFLOAD_DEVICE)
        self._handles = [entry.register_forward_pre_hook(partial(self._pre_forward, i), with_kwargs=True)
                         for i, module in enumerate(self.components) for entry in entry_points(module)]

    def activate(self, index: int) -> None:
        """Bring `components[index]` onto `device`, sending the one there back to the CPU first."""
        if self.active == index:
            return
        self.release()
        self.components[index].to(self.device)
        self.active = index
        self.activations.append(index)

    def release(self) -> None:
        """Send the active component back to the CPU (e.g. at the end of a call, to free the GPU for other work)."""
        if self.active is not None:
            self.components[self.active].to(OFFLOAD_DEVICE)
            self.active = None

    def remove(self) -> None:
        """Undo: remove the hooks and put every component on `device`, as a pipeline without offload has them."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.active = None
        for module in self.components:
            module.to(self.device)

    def _pre_forward(self, index: int, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        check_inference(self.components[index], "model offload")
        self.activate(index)
        return _to_device(args, self.device), _to_device(kwargs, self.device)


def enable_model_offload(components: list[nn.Module], device: str | torch.device) -> ModelOffload:
    """Keep `components` on the CPU, each on `device` only while it runs (one at a time).

    For the pipeline: `[pipe.text_encoder.model, pipe.dit, pipe.vae]`. A component that defines no `forward` (the
    causal VAE, whose streaming steps call its encoder, decoder and quant convs) is hooked on the children that do."""
    components = list(components)
    if not components:
        raise ValueError("enable_model_offload needs at least one component; got an empty list")
    for i, module in enumerate(components):
        if not isinstance(module, nn.Module):
            hint = " (for a TextEncoder pass its .model)" if hasattr(module, "model") else ""
            raise TypeError(f"component {i} is a {type(module).__name__}, not a torch nn.Module{hint}")
        if not entry_points(module):
            raise ValueError(f"component {i} ({type(module).__name__}) has no forward and no submodule with one, so "
                             "nothing would bring it onto the device")
    if len({id(m) for m in components}) != len(components):
        raise ValueError("the same module is given twice; pass each component once")
    return ModelOffload(components, _check_device(device))


def entry_points(module: nn.Module) -> list[nn.Module]:
    """The submodules whose forward starts `module`'s work: `module` itself when it defines `forward`, else (as for the
    causal VAE, run through `encode_step`/`decode_step`) the entry points of its children."""
    if type(module).forward is not nn.Module.forward:
        return [module]
    return [entry for child in module.children() for entry in entry_points(child)]


def _to_device(values, device: torch.device):
    """Top-level tensors of an args tuple or kwargs dict moved to `device`. Containers inside are passed as they are,
    never rebuilt: the VAE's encoder and decoder fill their `states` list in place, and a copy would lose the cache."""
    if isinstance(values, dict):
        return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in values.items()}
    return tuple(v.to(device) if isinstance(v, torch.Tensor) else v for v in values)


# --- block offload ------------------------------------------------------------------------------------------------


class BlockOffload:
    """`dit.blocks` streamed through `device` (see `enable_block_offload`).

    Holds `dit`, `device`, `window` (the most blocks on `device` at a time), `resident` (indices of the blocks whose
    weights are on `device` now, copied or being copied) and `max_resident` (the most there were at once so far).
    Each block's weights are kept as CPU copies (pinned for CUDA); while a block is not running its parameters' `.data`
    are those copies."""

    def __init__(self, dit: nn.Module, device: torch.device, window: int):
        self.dit = dit
        self.device = device
        self.window = window
        self.max_resident = 0
        self.blocks = list(dit.blocks)
        in_blocks = {id(t) for block in self.blocks for t in _weights(block)}
        for t in (*dit.parameters(), *dit.buffers()):
            if id(t) not in in_blocks:
                t.data = t.data.to(device)
        pin = device.type == "cuda"
        self._host = [[_host_copy(t, pin) for t in _weights(block)] for block in self.blocks]
        for block, host in zip(self.blocks, self._host):
            _swap_in(block, host)
        # Copies in flight or done on `_stream`: index -> (device tensors, CUDA event marking their end, or None).
        self._fetched: dict[int, tuple[list[torch.Tensor], torch.cuda.Event | None]] = {}
        self._stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self._handles = []
        for i, block in enumerate(self.blocks):
            self._handles.append(block.register_forward_pre_hook(partial(self._pre_forward, i)))
            self._handles.append(block.register_forward_hook(partial(self._post_forward, i)))

    @property
    def resident(self) -> set[int]:
        return set(self._fetched)

    def remove(self) -> None:
        """Undo: remove the hooks and put the whole DiT on `device`."""
        if not self._handles:  # removed already
            return
        if self._stream is not None:
            self._stream.synchronize()
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._fetched.clear()
        for block, host in zip(self.blocks, self._host):
            _swap_in(block, [h.to(self.device) for h in host])
        self._host = [[] for _ in self.blocks]

    def _pre_forward(self, index: int, block: nn.Module, args: tuple) -> None:
        check_inference(block, "block offload")
        n = len(self.blocks)
        # This block, then the next ones; past the last block the window wraps to block 0 for the next call.
        ahead = [(index + k) % n for k in range(min(self.window, n))]
        for j in list(self._fetched):
            if j not in ahead:  # left over from a forward that stopped early (a step-cache skip, an error)
                self._post_forward(j, self.blocks[j], (), None)
        for j in ahead:
            self._fetch(j)
        tensors, event = self._fetched[index]
        if event is not None:
            compute = torch.cuda.current_stream(self.device)
            compute.wait_event(event)
            for t in tensors:  # so the allocator does not hand their memory to the side stream while compute reads it
                t.record_stream(compute)
            self._fetched[index] = (tensors, None)
        _swap_in(block, tensors)

    def _post_forward(self, index: int, block: nn.Module, args: tuple, output) -> None:
        _swap_in(block, self._host[index])
        self._fetched.pop(index, None)

    def _fetch(self, index: int) -> None:
        if index in self._fetched:
            return
        host = self._host[index]
        if self._stream is None:  # no streams (CPU and others): a plain, synchronous copy
            self._fetched[index] = ([h.to(self.device, copy=True) for h in host], None)
        else:
            with torch.cuda.stream(self._stream):
                tensors = [h.to(self.device, non_blocking=True) for h in host]
                event = torch.cuda.Event()
                event.record(self._stream)
            self._fetched[index] = (tensors, event)
        self.max_resident = max(self.max_resident, len(self._fetched))


def enable_block_offload(dit: nn.Module, device: str | torch.device, resident: int = 2) -> BlockOffload:
    """Keep the DiT's non-block weights on `device` and its blocks on the CPU, each block on `device` from shortly
    before its forward (prefetched `resident - 1` blocks ahead) until its end. Inference only: `dit` must be in eval
    mode, and it refuses to run with gradients enabled while its parameters require them."""
    if isinstance(resident, bool) or not isinstance(resident, int) or resident < 1:
        raise ValueError(f"resident={resident!r}; expected a whole number of blocks >= 1 (2 overlaps copy and compute)")
    blocks = getattr(dit, "blocks", None)
    if not isinstance(blocks, nn.ModuleList) or len(blocks) == 0:
        raise ValueError(f"block offload needs a model with its transformer blocks in `.blocks` (an nn.ModuleList); "
                         f"{type(dit).__name__} has {type(blocks).__name__ if blocks is not None else 'none'}")
    if dit.training:
        raise ValueError("block offload is for inference and the DiT is in training mode; call dit.eval() first")
    return BlockOffload(dit, _check_device(device), resident)


class Offloads:
    """Several offloads (one per expert of a two-expert model) undone together."""

    def __init__(self, parts: list):
        self.parts = parts

    def remove(self) -> None:
        for part in self.parts:
            part.remove()


def _weights(module: nn.Module) -> list[torch.Tensor]:
    return [*module.parameters(), *module.buffers()]


def _host_copy(t: torch.Tensor, pin: bool) -> torch.Tensor:
    host = t.detach().to(OFFLOAD_DEVICE)
    return host.pin_memory() if pin else host


def _swap_in(block: nn.Module, tensors: list[torch.Tensor]) -> None:
    for t, data in zip(_weights(block), tensors, strict=True):
        t.data = data


# --- shared checks ------------------------------------------------------------------------------------------------


def check_inference(module: nn.Module, mode: str) -> None:
    """Offload swaps weights under autograd's feet, so a forward that records gradients for them is refused."""
    if torch.is_grad_enabled() and any(p.requires_grad for p in module.parameters()):
        raise RuntimeError(f"{mode} is for inference, but {type(module).__name__} would record gradients for its "
                           "weights; run under torch.no_grad() (the pipeline does) or call requires_grad_(False)")


def _check_device(device: str | torch.device) -> torch.device:
    """`check_device`, with a CUDA device's index made explicit (offload compares the devices of tensors)."""
    from vidgen.device import check_device

    device = check_device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device
