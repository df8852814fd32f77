"""Train K TabularMLPs of one architecture at once: stacked weights, batched matmuls.

A batch-64 step of a small MLP is mostly per-op overhead (the arithmetic takes ~30 us of a
~0.7 ms step), so K models sharing every op cost little more than one. Each model keeps
its own data, its own seeded batch order and its own initial weights; the gradient of the
summed per-model mean losses with respect to model k's slice of a stacked tensor is
exactly model k's own gradient, and Adam is elementwise, so a cohort reproduces K
separate ``fit(..., strategy="full")`` runs without validation to float tolerance.

Not yet covered (the study still trains models one by one): frozen sets, phases,
per-model early stopping, learning-rate groups.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .errors import ConfigError
from .tabular.model import TabularMLP


def _stack(models: Sequence[TabularMLP]) -> dict[str, torch.Tensor]:
    names = [n for n, _ in models[0].named_parameters()]
    for m in models[1:]:
        if [n for n, _ in m.named_parameters()] != names or m.config()["cardinalities"] != models[0].config()["cardinalities"]:
            raise ConfigError("a cohort needs models of one architecture")
    return {n: torch.stack([dict(m.named_parameters())[n].detach() for m in models]).requires_grad_(True)
            for n in names}


def cohort_forward(p: dict[str, torch.Tensor], keys: list[str], n_body: int, cat: torch.Tensor,
                   num: torch.Tensor) -> torch.Tensor:
    """Outputs [K, B, 1] of K stacked TabularMLPs on per-model batches cat [K, B, C], num [K, B, N]."""
    k = torch.arange(cat.shape[0]).unsqueeze(1)
    parts = [p[f"embeddings.{key}.weight"][k, cat[:, :, j]] for j, key in enumerate(keys)]
    x = torch.cat([*parts, num], dim=2)
    for i in range(n_body):
        w, b = p[f"body.{i}.0.weight"], p[f"body.{i}.0.bias"]
        x = torch.relu(torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2)))
    return torch.baddbmm(p["head.bias"].unsqueeze(1), x, p["head.weight"].transpose(1, 2))


def fit_cohort(
    models: Sequence[TabularMLP],
    data: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    *,
    seeds: Sequence[int],
    lr: float = 1e-3,
    epochs: int = 10,
    batch_size: int = 64,
) -> list[TabularMLP]:
    """Train every model on its own (cat, num, y) at once; write the weights back; return the models.

    Each model's batches follow ``torch.randperm(n, generator=Generator().manual_seed(seed))``
    per epoch, as ``fit`` does. All datasets must have the same number of rows.
    """
    if not (len(models) == len(data) == len(seeds)) or not models:
        raise ConfigError("a cohort needs one dataset and one seed per model")
    n = data[0][2].shape[0]
    if any(d[2].shape[0] != n for d in data):
        raise ConfigError("cohort datasets must have the same number of rows")
    params = _stack(models)
    cat = torch.stack([d[0] for d in data])
    num = torch.stack([d[1] for d in data])
    y = torch.stack([d[2] for d in data])
    keys = models[0].keys
    n_body = len(models[0].body)
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    try:
        opt = torch.optim.Adam(list(params.values()), lr=lr, fused=True)
    except (RuntimeError, TypeError):
        opt = torch.optim.Adam(list(params.values()), lr=lr, foreach=True)
    k = torch.arange(len(models)).unsqueeze(1)
    # Unlike one small model, the stacked matmuls are large enough to use every core.
    for _ in range(epochs):
        perms = torch.stack([torch.randperm(n, generator=g) for g in gens])
        for start in range(0, n, batch_size):
            idx = perms[:, start : start + batch_size]
            out = cohort_forward(params, keys, n_body, cat[k, idx], num[k, idx])
            loss = (out - y[k, idx]).pow(2).mean(dim=(1, 2)).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    with torch.no_grad():
        for i, m in enumerate(models):
            for name, p in m.named_parameters():
                p.copy_(params[name][i])
    return list(models)
