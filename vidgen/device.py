"""Which device to run on: the one check every loader and command line shares (before any weight is read)."""

from __future__ import annotations

import torch


def check_device(device: str | torch.device | None) -> torch.device:
    """The device to load onto (default: CUDA when available); a clear error for one this torch cannot use."""
    try:
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device {device!r} is not a device name such as cpu, cuda or cuda:1 ({e})") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ValueError(f"device {str(device)!r} asked for, but {why}; use --device cpu (or install a CUDA "
                             "build of torch on a machine with a GPU)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(device)!r} asked for, but only {torch.cuda.device_count()} CUDA GPU(s) "
                             "are visible")
    elif device.type in ("mps", "xpu"):
        backend = getattr(torch, device.type, None) if device.type == "xpu" else torch.backends.mps
        if backend is None or not backend.is_available():
            raise ValueError(f"device {str(device)!r} asked for, but this machine or torch build has none; use "
                             "--device cpu")
    elif device.type != "cpu":
        raise ValueError(f"device {str(device)!r} is not supported; expected cpu or cuda[:N]")
    return device
