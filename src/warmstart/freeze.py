"""Freezing: which parameters train, addressed by name pattern or by depth.

``freeze(model, "body.0.*")`` sets ``requires_grad=False``; ``freeze(model, first=2)``
freezes the first two blocks (see ``names.blocks``). Two things ``requires_grad=False``
alone does not do, and this module does:

* BatchNorm running statistics still move in ``train()`` mode. A BatchNorm layer whose
  parameters are all frozen is put back in evaluation mode by ``train_mode_``.
* Freezing part of a tensor (the embedding rows of known categories, while rows added for
  new categories learn): ``freeze_rows_`` masks those rows' gradients and
  ``restore_frozen_rows_`` puts their exact values back after each optimizer step, so
  weight decay or momentum cannot move them either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .errors import ConfigError
from .names import block_of, blocks, parameter_names, select

_FROZEN_ROWS = "_warmstart_frozen_rows"


def _names_for(model: nn.Module, patterns: Sequence[str], first: int | None) -> list[str]:
    names = parameter_names(model)
    chosen: list[str] = []
    if patterns:
        chosen += select(names, patterns)
    if first is not None:
        model_blocks = blocks(model)
        if not 0 <= first <= len(model_blocks):
            raise ConfigError(
                f"first={first} is out of range: the model has {len(model_blocks)} blocks "
                f"({', '.join('+'.join(b) for b in model_blocks)})"
            )
        chosen += [n for n in names if (i := block_of(n, model_blocks)) is not None and i < first]
    if not patterns and first is None:
        raise ConfigError("give at least one name pattern (e.g. 'body.0.*') or first=K")
    return [n for n in names if n in set(chosen)]


def _set(model: nn.Module, names: list[str], flag: bool) -> list[str]:
    params = dict(model.named_parameters())
    for n in names:
        params[n].requires_grad_(flag)
    return names


def freeze(model: nn.Module, *patterns: str, first: int | None = None) -> list[str]:
    """Stop the matched parameters from training; return their names."""
    return _set(model, _names_for(model, patterns, first), False)


def unfreeze(model: nn.Module, *patterns: str, first: int | None = None) -> list[str]:
    """Let the matched parameters train again; return their names."""
    return _set(model, _names_for(model, patterns, first), True)


def frozen_batchnorms(model: nn.Module) -> list[nn.Module]:
    """BatchNorm layers whose affine parameters are all frozen."""
    out = []
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            params = list(m.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                out.append(m)
    return out


def train_mode_(model: nn.Module) -> nn.Module:
    """``model.train()``, except frozen BatchNorm layers stay in eval mode (stats fixed)."""
    model.train()
    for bn in frozen_batchnorms(model):
        bn.train(False)
    return model


def freeze_rows_(param: nn.Parameter, rows: torch.Tensor) -> nn.Parameter:
    """Freeze the given rows of ``param`` (indices or a boolean mask); the others train.

    The parameter keeps ``requires_grad=True``; a gradient hook zeroes the frozen rows and
    their values are kept so ``restore_frozen_rows_`` can undo any optimizer drift.
    """
    mask = torch.zeros(param.shape[0], dtype=torch.bool, device=param.device)
    mask[rows] = True
    if hasattr(param, _FROZEN_ROWS):
        getattr(param, _FROZEN_ROWS)[2].remove()
    keep = (~mask).to(param.dtype).view(-1, *([1] * (param.dim() - 1)))
    handle = param.register_hook(lambda g: g * keep)
    setattr(param, _FROZEN_ROWS, (mask, param.detach()[mask].clone(), handle))
    param.requires_grad_(True)
    return param


@torch.no_grad()
def restore_frozen_rows_(model: nn.Module) -> None:
    """Copy the saved values of every row frozen with ``freeze_rows_`` back into place."""
    for p in model.parameters():
        state = getattr(p, _FROZEN_ROWS, None)
        if state is not None:
            p[state[0]] = state[1]


def frozen_rows(param: torch.Tensor) -> torch.Tensor | None:
    """The boolean row mask set by ``freeze_rows_``, or None."""
    state = getattr(param, _FROZEN_ROWS, None)
    return None if state is None else state[0]


@dataclass(frozen=True)
class ParamRow:
    name: str
    shape: tuple[int, ...]
    numel: int
    trainable: str  # "yes", "no" or "rows i/n" (partly frozen)
    block: int | None


@dataclass(frozen=True)
class TrainableMap:
    rows: list[ParamRow]

    @property
    def trainable_count(self) -> int:
        return sum(r.numel for r in self.rows if r.trainable != "no")

    @property
    def total_count(self) -> int:
        return sum(r.numel for r in self.rows)

    def as_dict(self) -> dict[str, str]:
        return {r.name: r.trainable for r in self.rows}

    def __str__(self) -> str:
        width = max([len(r.name) for r in self.rows] + [9])
        lines = [f"{'parameter':<{width}}  {'shape':<14}{'numel':>9}  trainable"]
        for r in self.rows:
            lines.append(f"{r.name:<{width}}  {str(list(r.shape)):<14}{r.numel:>9}  {r.trainable}")
        lines.append(f"trainable {self.trainable_count:,} of {self.total_count:,} parameters")
        return "\n".join(lines)


def trainable_map(model: nn.Module) -> TrainableMap:
    """A table of every parameter: shape, size, whether (or which rows of) it trains."""
    model_blocks = blocks(model)
    rows = []
    for name, p in model.named_parameters():
        mask = frozen_rows(p)
        if not p.requires_grad:
            flag = "no"
        elif mask is not None and mask.any():
            flag = f"rows {int((~mask).sum())}/{mask.numel()}"
        else:
            flag = "yes"
        rows.append(ParamRow(name, tuple(p.shape), p.numel(), flag, block_of(name, model_blocks)))
    return TrainableMap(rows)


def clear_frozen_rows_(param: torch.Tensor) -> None:
    """Undo ``freeze_rows_`` on ``param`` (every row trains again)."""
    state = getattr(param, _FROZEN_ROWS, None)
    if state is not None:
        state[2].remove()
        delattr(param, _FROZEN_ROWS)
