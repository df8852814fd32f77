"""Where training runs: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when available).

The small tabular models of this project train fastest on the CPU (a batch-64 step is
dominated by per-op overhead, which a GPU's kernel launches only raise), so the commands
default to ``cpu``; ``--device cuda`` moves the model and the in-memory tensors to the GPU
once, and batches are then index slices on the device.
"""

from __future__ import annotations

import torch
from torch import nn

from .errors import ConfigError


def resolve_device(device: str | torch.device | None, model: nn.Module | None = None) -> torch.device:
    """The device to train on; ``None`` keeps the model's own. Unavailable CUDA is an error."""
    if device is None:
        first = next(iter(model.parameters()), None) if model is not None else None
        return first.device if first is not None else torch.device("cpu")
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device '{device}'; use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device '{device}' was requested but CUDA is not available here (torch {torch.__version__}, "
                f"built for CUDA {torch.version.cuda or 'no'}); use --device cpu"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device '{device}' does not exist: {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type != "cpu":
        raise ConfigError(f"device '{device}' is not supported; use cpu, cuda, cuda:N or auto")
    return dev
