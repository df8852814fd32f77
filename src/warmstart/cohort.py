"""Train K TabularMLPs of one architecture at once: stacked weights, batched matmuls.

A batch-64 step of a small MLP is mostly per-op overhead (the arithmetic takes ~30 us of a
~0.7 ms step), so K models sharing every op cost little more than one. The members share
the training and validation rows (as every strategy of one study cell does) but each has
its own strategy (frozen blocks, row freezes, phases, per-block learning rates, L2-SP),
learning rate, seeded batch order and early stopping. A member that has stopped no longer
changes. The result equals K separate ``fit`` calls to float tolerance: the gradient of the
summed per-member losses with respect to member k's slice is member k's own gradient, and
Adam is applied elementwise with a step count per element, as separate optimizers count
per parameter (a group added in lp-ft's second phase starts its own count).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .errors import ConfigError, TrainingDivergedError
from .freeze import frozen_rows
from .init import init_
from .names import block_of, blocks
from .strategies import Strategy, apply_phase_, parse_strategy
from .tabular.model import TabularMLP
from .train import FitResult

BETAS, EPS = (0.9, 0.999), 1e-8


def cohort_forward(p: dict[str, torch.Tensor], keys: list[str], n_body: int, cat: torch.Tensor,
                   num: torch.Tensor) -> torch.Tensor:
    """Outputs [K, B, 1] of K stacked TabularMLPs on per-member batches cat [K, B, C], num [K, B, N]."""
    k = torch.arange(cat.shape[0]).unsqueeze(1)
    parts = [p[f"embeddings.{key}.weight"][k, cat[:, :, j]] for j, key in enumerate(keys)]
    x = torch.cat([*parts, num], dim=2)
    for i in range(n_body):
        w, b = p[f"body.{i}.0.weight"], p[f"body.{i}.0.bias"]
        x = torch.relu(torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2)))
    return torch.baddbmm(p["head.bias"].unsqueeze(1), x, p["head.weight"].transpose(1, 2))


@dataclass
class _Member:
    plan: Strategy
    lr: float
    gen: torch.Generator
    phase: int = 0
    epoch: int = 0
    phase_epochs: int = 0
    best: tuple[float, int | None, dict[str, torch.Tensor] | None] = (math.inf, None, None)
    stale: int = 0
    done: bool = False


def _phase_masks(model: TabularMLP, plan: Strategy, phase: int, lr: float) -> dict[str, torch.Tensor]:
    """Per-element learning rate for one member in one phase (0 where frozen)."""
    apply_phase_(model, plan.phases[phase])
    model_blocks = blocks(model)
    out = {}
    for name, p in model.named_parameters():
        i = block_of(name, model_blocks)
        scale = 1.0 if plan.lr_decay is None or i is None else plan.lr_decay ** (len(model_blocks) - 1 - i)
        rate = torch.full_like(p, lr * scale) if p.requires_grad else torch.zeros_like(p)
        rows = frozen_rows(p)
        if rows is not None:
            rate[rows] = 0.0
        out[name] = rate
    return out


def _adam_step_(params: dict[str, torch.Tensor], m_state: dict[str, torch.Tensor], v_state: dict[str, torch.Tensor],
                steps: dict[str, torch.Tensor], rates: dict[str, torch.Tensor], trainable: dict[str, torch.Tensor],
                trains: dict[str, torch.Tensor], active: torch.Tensor) -> None:
    """One Adam step for every member at once (``torch._foreach_*`` over the stacked tensors).

    Member k updates parameter n only when n is in its optimizer and k still trains; the
    others keep weights, moments and step count. Per element: m = b1 m + (1-b1) g,
    v = b2 v + (1-b2) g^2, w -= lr (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps).
    """
    names = [n for n in params if (trains[n] & active).any()]
    if not names:
        return
    sels, bc1, bc2 = [], [], []
    for n in names:
        on = (trains[n] & active).float()
        steps[n] += on
        shape = (on.shape[0],) + (1,) * (params[n].dim() - 1)
        sel = on.view(shape)
        step = steps[n].clamp(min=1).view(shape)
        sels.append(sel)
        bc1.append(sel / (1 - BETAS[0] ** step))
        bc2.append((1 - BETAS[1] ** step).sqrt())
    ts = [params[n] for n in names]
    ms, vs = [m_state[n] for n in names], [v_state[n] for n in names]
    gs = torch._foreach_mul([t.grad for t in ts], [trainable[n] for n in names])
    torch._foreach_mul_(gs, sels)
    torch._foreach_mul_(ms, [1 - (1 - BETAS[0]) * s for s in sels])
    torch._foreach_add_(ms, gs, alpha=1 - BETAS[0])
    torch._foreach_mul_(vs, [1 - (1 - BETAS[1]) * s for s in sels])
    torch._foreach_addcmul_(vs, gs, gs, value=1 - BETAS[1])
    denom = torch._foreach_sqrt(vs)
    torch._foreach_div_(denom, bc2)
    torch._foreach_add_(denom, EPS)
    update = torch._foreach_mul(ms, [rates[n] for n in names])
    torch._foreach_mul_(update, bc1)
    torch._foreach_div_(update, denom)
    torch._foreach_sub_(ts, update)


def fit_cohort(
    models: Sequence[TabularMLP],
    X: tuple[torch.Tensor, torch.Tensor],
    y: torch.Tensor,
    *,
    strategies: Sequence[str | Strategy],
    lrs: Sequence[float],
    seeds: Sequence[int],
    epochs: int = 100,
    batch_size: int = 64,
    val: tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    patience: int = 10,
) -> list[FitResult]:
    """Train every model on the same rows at once, each with its own strategy, lr and seed.

    Equivalent to ``fit(models[k], X, y, strategy=..., lr=..., seed=..., val=val, ...)`` for
    every k (Adam, no weight decay). The models' weights are replaced by the results.
    """
    K = len(models)
    if not (K == len(strategies) == len(lrs) == len(seeds)) or K == 0:
        raise ConfigError("a cohort needs one strategy, learning rate and seed per model")
    names = [n for n, _ in models[0].named_parameters()]
    if any([n for n, _ in m.named_parameters()] != names or
           [p.shape for p in m.parameters()] != [p.shape for p in models[0].parameters()] for m in models):
        raise ConfigError("a cohort needs models of one architecture and size")
    members = []
    for m, s, lr, seed in zip(models, strategies, lrs, seeds):
        plan = parse_strategy(s) if isinstance(s, str) else s
        if plan.reinit:
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                init_(m, "default")
        members.append(_Member(plan, float(lr), torch.Generator().manual_seed(seed)))
    params = {n: torch.stack([dict(m.named_parameters())[n].detach() for m in models]).requires_grad_(True)
              for n in names}
    anchor = {n: t.detach().clone() for n, t in params.items()}
    alpha = torch.tensor([m.plan.l2sp_alpha or 0.0 for m in members])
    rates = {n: torch.zeros_like(t) for n, t in params.items()}
    trainable = {n: torch.zeros_like(t) for n, t in params.items()}  # 1 where the element may change
    trains = {n: torch.zeros(K, dtype=torch.bool) for n in names}  # in the member's optimizer yet

    def enter_phase(k: int) -> None:
        member = members[k]
        for n, rate in _phase_masks(models[k], member.plan, member.phase, member.lr).items():
            rates[n][k] = rate
            trainable[n][k] = (rate > 0).to(rate.dtype)
            trains[n][k] = trains[n][k] or models[k].get_parameter(n).requires_grad

    for k in range(K):
        enter_phase(k)
    m_state = {n: torch.zeros_like(t) for n, t in params.items()}
    v_state = {n: torch.zeros_like(t) for n, t in params.items()}
    steps = {n: torch.zeros(K) for n in names}
    cat, num = X
    n_rows, keys, n_body = y.shape[0], models[0].keys, len(models[0].body)
    idx_k = torch.arange(K).unsqueeze(1)
    results = [FitResult(m.plan.name) for m in members]

    def budget(member: _Member) -> int:
        phase = member.plan.phases[member.phase]
        if len(member.plan.phases) == 1:
            return epochs
        return min(phase.max_epochs or epochs, epochs - (member.epoch - member.phase_epochs))

    def penalty() -> torch.Tensor:
        total = torch.zeros(K)
        for n, t in params.items():
            if alpha.any():
                diff = (t - anchor[n]).pow(2) * trainable[n]
                total = total + 0.5 * alpha * diff.flatten(1).sum(1)
        return total

    while not all(m.done for m in members):
        active = torch.tensor([not m.done for m in members])
        perms = torch.stack([torch.randperm(n_rows, generator=m.gen) if not m.done else torch.arange(n_rows)
                             for m in members])
        for start in range(0, n_rows, batch_size):
            idx = perms[:, start : start + batch_size]
            out = cohort_forward(params, keys, n_body, cat[idx], num[idx])
            per_member = (out - y[idx]).pow(2).mean(dim=(1, 2))
            if alpha.any():
                per_member = per_member + penalty()
            if not torch.isfinite(per_member[active]).all():
                bad = [members[k].plan.name for k in range(K) if active[k] and not torch.isfinite(per_member[k])]
                raise TrainingDivergedError(f"the loss became non-finite for cohort member(s) {bad}")
            for t in params.values():
                t.grad = None
            (per_member * active).sum().backward()
            with torch.no_grad():
                _adam_step_(params, m_state, v_state, steps, rates, trainable, trains, active)
        with torch.no_grad():
            val_loss = None
            if val is not None:
                (vc, vn), vy = val
                vo = cohort_forward(params, keys, n_body, vc.expand(K, *vc.shape), vn.expand(K, *vn.shape))
                val_loss = (vo - vy).pow(2).mean(dim=(1, 2))
            for k, member in enumerate(members):
                if member.done:
                    continue
                member.epoch += 1
                member.phase_epochs += 1
                results[k].history.append({"epoch": member.epoch, "phase": member.plan.phases[member.phase].name,
                                           **({"val_loss": float(val_loss[k])} if val_loss is not None else {})})
                stop = False
                if val_loss is not None:
                    if float(val_loss[k]) < member.best[0]:
                        member.best = (float(val_loss[k]), member.epoch,
                                       {n: t[k].detach().clone() for n, t in params.items()})
                        member.stale = 0
                    else:
                        member.stale += 1
                        stop = member.stale >= patience
                        results[k].stopped_early |= stop
                if stop or member.phase_epochs >= budget(member):
                    if member.best[2] is not None:
                        for n, t in params.items():
                            t[k] = member.best[2][n]
                        results[k].best_epoch, results[k].best_val_loss = member.best[1], member.best[0]
                    member.phase += 1
                    member.phase_epochs, member.stale = 0, 0
                    member.best = (math.inf, None, None)
                    if member.phase >= len(member.plan.phases) or member.epoch >= epochs:
                        member.done = True
                    else:
                        enter_phase(k)
    with torch.no_grad():
        for k, m in enumerate(models):
            for n, p in m.named_parameters():
                p.copy_(params[n][k])
    for k, r in enumerate(results):
        r.epochs_run = members[k].epoch
    return results
