"""Named fine-tuning strategies, as data, resolved against any model's blocks.

| name               | what trains                                   | extra                         |
|--------------------|-----------------------------------------------|-------------------------------|
| ``scratch``        | everything, re-initialized first (baseline)   |                               |
| ``full``           | everything, from the pretrained weights       | use a smaller lr              |
| ``freeze:K``       | all but the first K blocks                    |                               |
| ``probe``          | the last block (the head) only                | linear probing                |
| ``lp-ft``          | head first (early-stopped), then everything   | Kumar et al. 2022             |
| ``l2sp[:ALPHA]``   | everything                                    | L2-SP penalty, alpha=0.01     |
| ``discriminative[:D]`` | everything                                | block i lr * D^(n-1-i), D=0.5 |

Blocks come from ``names.blocks`` (a model may declare them with ``warmstart_blocks()``).
A model may also declare ``warmstart_row_freeze() -> {param name: row indices}``: when
such a parameter is frozen, only those rows freeze (e.g. embedding rows of categories the
source knew), and the other rows keep training.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .errors import ConfigError, did_you_mean
from .freeze import clear_frozen_rows_, freeze_rows_
from .names import block_of, blocks

NAMES = ("scratch", "full", "freeze:K", "probe", "lp-ft", "l2sp", "discriminative")


@dataclass(frozen=True)
class Phase:
    """One stage of training: which blocks train, for at most how many epochs."""

    name: str
    frozen_blocks: int | str  # number of leading blocks frozen, or "all-but-last"
    max_epochs: int | None = None  # None: the run's epoch budget


@dataclass(frozen=True)
class Strategy:
    name: str
    phases: tuple[Phase, ...]
    reinit: bool = False
    lr_decay: float | None = None
    l2sp_alpha: float | None = None
    l2sp_beta: float = 0.0

    def __str__(self) -> str:
        return self.name


def _number(text: str, name: str, kind: type) -> float | int:
    try:
        value = kind(text)
    except ValueError:
        raise ConfigError(f"strategy '{name}': '{text}' is not a {kind.__name__}") from None
    if value < 0:
        raise ConfigError(f"strategy '{name}': '{text}' must not be negative")
    return value


def parse_strategy(text: str, *, probe_epochs: int = 20) -> Strategy:
    """Parse a strategy name such as ``freeze:2``, ``l2sp:0.1`` or ``lp-ft``."""
    if isinstance(text, Strategy):
        return text
    base, _, arg = str(text).strip().partition(":")
    train_all = (Phase("train", 0),)
    if base == "scratch" and not arg:
        return Strategy("scratch", train_all, reinit=True)
    if base == "full" and not arg:
        return Strategy("full", train_all)
    if base == "freeze" and arg:
        k = int(_number(arg, text, int))
        return Strategy(f"freeze:{k}", (Phase("train", k),))
    if base == "probe" and not arg:
        return Strategy("probe", (Phase("probe", "all-but-last"),))
    if base == "lp-ft" and not arg:
        return Strategy("lp-ft", (Phase("probe", "all-but-last", probe_epochs), Phase("fine-tune", 0)))
    if base == "l2sp":
        alpha = float(_number(arg, text, float)) if arg else 0.01
        return Strategy(f"l2sp:{alpha:g}", train_all, l2sp_alpha=alpha)
    if base == "discriminative":
        decay = float(_number(arg, text, float)) if arg else 0.5
        if not 0 < decay <= 1:
            raise ConfigError(f"strategy '{text}': the per-block factor must lie in (0, 1]")
        return Strategy(f"discriminative:{decay:g}", train_all, lr_decay=decay)
    raise ConfigError(
        f"unknown strategy '{text}'{did_you_mean(base, [n.split(':')[0] for n in NAMES])}; "
        f"strategies are: {', '.join(NAMES)} (K = number of leading blocks to freeze)"
    )


def frozen_parameter_names(model: nn.Module, phase: Phase) -> list[str]:
    """Names of the parameters this phase freezes."""
    model_blocks = blocks(model)
    k = len(model_blocks) - 1 if phase.frozen_blocks == "all-but-last" else int(phase.frozen_blocks)
    if k >= len(model_blocks) and k > 0:
        raise ConfigError(
            f"cannot freeze {k} blocks: the model has {len(model_blocks)} "
            f"({', '.join('+'.join(b) for b in model_blocks)}) and the last must train"
        )
    return [n for n, _ in model.named_parameters() if (i := block_of(n, model_blocks)) is not None and i < k]


def apply_phase_(model: nn.Module, phase: Phase) -> list[str]:
    """Set ``requires_grad`` for ``phase``; return the names that train in it."""
    frozen = set(frozen_parameter_names(model, phase))
    declared = getattr(model, "warmstart_row_freeze", None)
    partial = declared() if callable(declared) else {}
    trainable = []
    for name, p in model.named_parameters():
        clear_frozen_rows_(p)
        rows = partial.get(name)
        if name in frozen and rows is not None and len(rows) < p.shape[0]:
            freeze_rows_(p, rows)  # the source's rows freeze; rows it never saw still learn
            trainable.append(name)
        else:
            p.requires_grad_(name not in frozen)
            if name not in frozen:
                trainable.append(name)
    return trainable
