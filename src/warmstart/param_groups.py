"""Optimizer parameter groups: discriminative learning rates, no decay on 1-D parameters.

With ``lr_decay = d`` and blocks ``b_0 .. b_{n-1}`` from input to output, block ``i``
learns at ``lr * d^(n-1-i)``: the head at ``lr``, each block nearer the input ``d`` times
slower (Howard & Ruder 2018, ULMFiT). Biases and normalization weights (every 1-D
parameter) get no weight decay. Frozen parameters are left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from .errors import ConfigError
from .names import block_of, blocks


def param_groups(
    model: nn.Module,
    lr: float,
    *,
    lr_decay: float | None = None,
    weight_decay: float = 0.0,
    only: Iterable[str] | None = None,
) -> list[dict[str, Any]]:
    """Groups for any ``torch.optim`` optimizer; each carries a ``name`` ('body.0/decay').

    ``only`` restricts the groups to those parameter names (used when unfreezing later).
    """
    if lr <= 0:
        raise ConfigError(f"learning rate must be positive, got {lr}")
    if lr_decay is not None and not 0 < lr_decay <= 1:
        raise ConfigError(f"lr_decay must lie in (0, 1], got {lr_decay}")
    wanted = set(only) if only is not None else None
    model_blocks = blocks(model)
    n = len(model_blocks)
    groups: dict[str, dict[str, Any]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad or (wanted is not None and name not in wanted):
            continue
        i = block_of(name, model_blocks)
        scale = 1.0 if lr_decay is None or i is None else lr_decay ** (n - 1 - i)
        block = "+".join(model_blocks[i]) if i is not None else "other"
        decays = p.dim() > 1 and weight_decay > 0
        key = f"{block}/{'decay' if decays else 'no_decay'}"
        group = groups.setdefault(
            key, {"name": key, "params": [], "param_names": [], "lr": lr * scale,
                  "weight_decay": weight_decay if decays else 0.0}
        )
        group["params"].append(p)
        group["param_names"].append(name)
    return list(groups.values())


def add_param_groups_(
    optimizer: torch.optim.Optimizer,
    groups: Sequence[dict[str, Any]],
    schedulers: Sequence[Any] = (),
) -> torch.optim.Optimizer:
    """Add groups to a live optimizer (after unfreezing), keeping LR schedulers correct.

    A scheduler records ``base_lrs`` per group when built; a group added later would be
    skipped by it (or break it). Each new group gets ``initial_lr`` = its own lr and starts
    at the schedule's current phase: ``lr = initial_lr * (lr_0 / initial_lr_0)`` taken from
    the optimizer's first group; each scheduler's per-group lists are extended.
    """
    first = optimizer.param_groups[0]
    phase = first["lr"] / first.get("initial_lr", first["lr"])
    for group in groups:
        group = dict(group)
        group["initial_lr"] = group["lr"]
        group["lr"] = group["lr"] * phase
        optimizer.add_param_group(group)
        for sched in schedulers:
            if sched.optimizer is not optimizer:
                raise ConfigError("a scheduler passed to add_param_groups_ drives another optimizer")
            sched.base_lrs.append(group["initial_lr"])
            for attr in ("lr_lambdas", "max_lrs", "min_lrs", "_last_lr"):
                values = getattr(sched, attr, None)
                if isinstance(values, list) and values:
                    values.append(group["lr"] if attr == "_last_lr" else values[-1])
    return optimizer


def make_optimizer(
    groups: list[dict[str, Any]], name: str = "adam", **kwargs: Any
) -> torch.optim.Optimizer:
    """Adam/AdamW/SGD over groups, with the fused or foreach kernel where PyTorch has one."""
    classes = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
    if name not in classes:
        raise ConfigError(f"unknown optimizer '{name}'; known: {', '.join(classes)}")
    cls = classes[name]
    if name in ("adam", "adamw"):
        try:
            return cls(groups, fused=True, **kwargs)
        except (RuntimeError, TypeError):
            pass
    return cls(groups, foreach=True, **kwargs)
