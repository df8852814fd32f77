"""``TabularMLP``: per-column embeddings, a body of Linear blocks, a linear head.

Parameter names read as the architecture: ``embeddings.<column>.weight``,
``body.<i>.0.weight`` (block i's Linear), ``head.weight``. Blocks for freezing are
``embeddings + body.0``, ``body.1``, ..., ``head``: ``freeze:1`` freezes the embeddings
and the first body block. When the embeddings freeze, only the rows the source model
trained freeze; rows appended for the target's new categories keep learning.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.modules.module import _global_forward_hooks, _global_forward_pre_hooks

from ..errors import CheckpointError, ConfigError
from .mlp_function import MSEGradients, TabularMLPFunction, embed


def _in_functorch_transform() -> bool:
    peek = getattr(torch._C._functorch, "peek_interpreter_stack", None)
    return peek is not None and peek() is not None


def embedding_dim(cardinality: int) -> int:
    """A common rule of thumb: about half the categories, between 2 and 16."""
    return int(min(16, max(2, (cardinality + 1) // 2)))


def module_key(column: str) -> str:
    """A module-name-safe key for a column (``nn.ModuleDict`` keys cannot hold dots)."""
    return re.sub(r"\W", "_", column) or "_"


class TabularMLP(nn.Module):
    def __init__(
        self,
        cardinalities: Mapping[str, int],
        n_numeric: int,
        hidden: Sequence[int] = (64, 64),
        embedding_dims: Mapping[str, int] | None = None,
        source_rows: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__()
        if not hidden or any(h < 1 for h in hidden):
            raise ConfigError(f"hidden sizes must be positive integers, got {list(hidden)}")
        self.columns = list(cardinalities)
        self.keys = [module_key(c) for c in self.columns]
        if len(set(self.keys)) != len(self.keys):
            raise ConfigError(f"column names {self.columns} collide once made module-safe")
        dims = dict(embedding_dims or {c: embedding_dim(n) for c, n in cardinalities.items()})
        self.embeddings = nn.ModuleDict(
            {k: nn.Embedding(cardinalities[c], dims[c]) for c, k in zip(self.columns, self.keys)}
        )
        self.n_numeric = n_numeric
        width = sum(dims[c] for c in self.columns) + n_numeric
        blocks = []
        for h in hidden:
            blocks.append(nn.Sequential(nn.Linear(width, h), nn.ReLU()))
            width = h
        self.body = nn.Sequential(*blocks)
        self.head = nn.Linear(width, 1)
        self.hidden = list(hidden)
        self.embedding_dims = dims
        # Rows of each table that the source model trained (the rest were added later).
        self.source_rows = dict(source_rows or cardinalities)

    def forward(self, categorical: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and self._plain():
            return TabularMLPFunction.apply(categorical, numeric, len(self.keys), *self.tables(), *self.layers())
        return self.head(self.body(torch.cat([embed(categorical, self.tables()), numeric], dim=1)))

    def warmstart_mse_gradients(self, categorical: torch.Tensor) -> MSEGradients | None:
        """A function ``(categorical, numeric, y) -> loss`` that sets every trainable
        parameter's ``.grad`` to the gradient of the mean squared error, without autograd
        (``mlp_function.MSEGradients``), for batches of these ``categorical`` rows; None
        when the modules are not plain or a parameter has a post-accumulate hook. It
        reads the frozen set and hooks once: ``fit`` makes one per epoch."""
        if not self._plain() or any(p._post_accumulate_grad_hooks for p in self.parameters()):
            return None
        return MSEGradients(self.tables(), self.layers(), categorical)

    def tables(self) -> list[torch.Tensor]:
        return [emb.weight for emb in self.embeddings.values()]

    def layers(self) -> list[torch.Tensor]:
        """W_1, b_1, ..., W_n, b_n of the body, then the head's W, b."""
        return [t for block in self.body for t in (block[0].weight, block[0].bias)] + [self.head.weight,
                                                                                        self.head.bias]

    def _plain(self) -> bool:
        """Whether the modules are still Linear + ReLU blocks without hooks, so the
        hand-written backward (one autograd node, ``mlp_function``) computes the same thing,
        and no ``torch.func`` transform (grad, vmap, ...) is running: those trace the modules."""
        if _global_forward_hooks or _global_forward_pre_hooks or _in_functorch_transform():
            return False
        for block in self.body:
            if len(block) != 2 or type(block[0]) is not nn.Linear or type(block[1]) is not nn.ReLU:
                return False
        return type(self.head) is nn.Linear and not any(m._forward_hooks or m._forward_pre_hooks for m in self.modules())

    # ------------------------------------------------------------------ transfer hooks
    def warmstart_blocks(self) -> list[tuple[str, ...]]:
        first = ("embeddings", "body.0") if len(self.body) else ("embeddings",)
        return [first, *[(f"body.{i}",) for i in range(1, len(self.body))], ("head",)]

    def warmstart_row_freeze(self) -> dict[str, range]:
        return {f"embeddings.{k}.weight": range(self.source_rows[c]) for c, k in zip(self.columns, self.keys)}

    @torch.no_grad()
    def extend_embeddings_(self, cardinalities: Mapping[str, int], policy: str = "mean") -> dict[str, int]:
        """Grow each table to the new cardinality; new rows start as the ``mean`` of the
        known rows or as a copy of the ``unknown`` row (index 0). Returns rows added."""
        if policy not in ("mean", "unknown"):
            raise ConfigError(f"new-category policy must be 'mean' or 'unknown', not '{policy}'")
        added = {}
        for c, k in zip(self.columns, self.keys):
            old = self.embeddings[k]
            n_new = cardinalities[c] - old.num_embeddings
            if n_new < 0:
                raise ConfigError(f"column '{c}': a vocabulary cannot shrink ({old.num_embeddings} -> {cardinalities[c]})")
            if n_new == 0:
                continue
            seed_row = old.weight[2:].mean(0) if policy == "mean" and old.num_embeddings > 2 else old.weight[0]
            table = nn.Embedding(cardinalities[c], old.embedding_dim)
            table.weight[: old.num_embeddings] = old.weight
            table.weight[old.num_embeddings :] = seed_row
            self.embeddings[k] = table
            added[c] = n_new
        return added

    @torch.no_grad()
    def set_unknown_rows_(self) -> None:
        """Set each table's ``<unknown>`` row (index 0) to the mean of its category rows.

        No training row is ever unknown, so that row would otherwise keep its random
        N(0, 1) init and send every unseen category somewhere arbitrary; the mean row
        predicts like an average category instead.
        """
        for emb in self.embeddings.values():
            if emb.num_embeddings > 2:
                emb.weight[0] = emb.weight[2:].mean(0)

    # ------------------------------------------------------------------ config
    def config(self) -> dict[str, Any]:
        return {
            "kind": "TabularMLP",
            "cardinalities": {c: self.embeddings[k].num_embeddings for c, k in zip(self.columns, self.keys)},
            "embedding_dims": self.embedding_dims,
            "n_numeric": self.n_numeric,
            "hidden": self.hidden,
            "source_rows": self.source_rows,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TabularMLP:
        try:
            if config.get("kind") != "TabularMLP":
                raise ValueError(f"model kind {config.get('kind')!r} is not 'TabularMLP'")
            return cls(
                {str(c): int(n) for c, n in config["cardinalities"].items()},
                int(config["n_numeric"]),
                [int(h) for h in config["hidden"]],
                {str(c): int(n) for c, n in config["embedding_dims"].items()},
                {str(c): int(n) for c, n in config["source_rows"].items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(f"the checkpoint's model config is malformed: {exc!r}") from None
