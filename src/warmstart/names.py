"""Name patterns: the one way to address parameters and modules (``fnmatch`` globs).

``body.0.*`` matches every parameter of the first body block; ``*.bias`` every bias.
A pattern that matches nothing is an error that lists the names it could have matched.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase

from torch import nn

from .errors import PatternError, did_you_mean, listing


def matches(name: str, pattern: str) -> bool:
    """True when ``pattern`` matches ``name`` itself or ``name`` as a prefix (``body.0``)."""
    return fnmatchcase(name, pattern) or fnmatchcase(name, pattern + ".*")


def select(names: Sequence[str], patterns: Iterable[str], what: str = "parameter") -> list[str]:
    """Names matching any pattern, in their original order; raise if a pattern matches none."""
    chosen: set[str] = set()
    for pattern in patterns:
        hit = {n for n in names if matches(n, pattern)}
        if not hit:
            raise PatternError(
                f"{what} pattern '{pattern}' matches no {what} name{did_you_mean(pattern, names)}; "
                f"the {what} names are: {listing(names, 40)}"
            )
        chosen |= hit
    return [n for n in names if n in chosen]


def parameter_names(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_parameters()]


def blocks(model: nn.Module) -> list[tuple[str, ...]]:
    """The model's blocks from input to output, each a tuple of module-name prefixes.

    A model may declare its own by defining ``warmstart_blocks()``; otherwise each
    top-level child holding parameters is a block, and an ``nn.Sequential`` or
    ``nn.ModuleList`` child is split into one block per element (``body.0``, ``body.1``).
    Blocks are ordered by where their first parameter appears in ``named_parameters()``.
    """
    declared = getattr(model, "warmstart_blocks", None)
    if callable(declared):
        return [tuple(b) for b in declared()]
    container = (nn.Sequential, nn.ModuleList)
    order: list[str] = []
    for name, _ in model.named_parameters():
        parts = name.split(".")
        child = model.get_submodule(parts[0]) if len(parts) > 1 else None
        # Split a container child into its elements, unless the model itself is the container.
        if isinstance(child, container) and len(parts) > 2 and not isinstance(model, container):
            prefix = ".".join(parts[:2])
        else:
            prefix = parts[0]
        if prefix not in order:
            order.append(prefix)
    return [(p,) for p in order]


def block_of(name: str, model_blocks: Sequence[tuple[str, ...]]) -> int | None:
    """Index of the block holding parameter ``name`` (None when no block holds it)."""
    for i, prefixes in enumerate(model_blocks):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return i
    return None
