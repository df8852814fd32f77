"""Train K TabularMLPs of one architecture at once: one flat tensor, batched matmuls.

A batch-64 step of a small MLP is mostly per-op overhead, so K models sharing every op
cost little more than one. The members share the training and validation rows (as every
strategy of one study cell does) but each has its own strategy (frozen blocks, row
freezes, phases, per-block learning rates, L2-SP), learning rate, seeded batch order and
early stopping. A member that has stopped leaves the stack and costs nothing more.

All K members' parameters live side by side in one [K, P] tensor (each parameter a view
into it), and so do their gradients and Adam moments: every optimizer operation is one
elementwise kernel over all members and parameters. Forward and backward are written
out as in ``tabular.mlp_function`` with ``bmm`` over the member axis; the embeddings of
all columns of all members come from one gather and go back by one ``index_add``.

The result equals K separate ``fit`` calls to float tolerance: the gradient of the summed
per-member losses with respect to member k's slice is member k's own gradient, and Adam is
applied per element with a step count per member and parameter, as separate optimizers
count per parameter (a group added in lp-ft's second phase starts its own count).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..errors import ConfigError, TrainingDivergedError
from ..freeze import frozen_rows
from ..init import init_
from ..names import block_of, blocks
from ..strategies import Strategy, apply_phase_, parse_strategy
from ..train import FitResult
from .mlp_function import layout_for
from .model import TabularMLP

BETAS, EPS = (0.9, 0.999), 1e-8
Validation = tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]


class _Stack:
    """K members' parameters in one flat tensor, parameter by parameter: for each name a
    contiguous [K, *shape] block, so every per-name view works as a ``bmm`` operand and an
    elementwise kernel over the whole tensor updates every member and parameter at once."""

    def __init__(self, names: list[str], shapes: list[tuple[int, ...]], data: torch.Tensor, K: int) -> None:
        self.names, self.shapes, self.K, self.data = names, shapes, K, data
        self.sizes = [math.prod(shape) for shape in shapes]
        self.views = self.split(data)
        self._counts = torch.tensor([size for size in self.sizes for _ in range(K)])

    @classmethod
    def of(cls, models: Sequence[TabularMLP]) -> _Stack:
        params = [dict(m.named_parameters()) for m in models]
        names = list(params[0])
        data = torch.cat([torch.stack([p[n].detach() for p in params]).reshape(-1) for n in names])
        return cls(names, [tuple(params[0][n].shape) for n in names], data, len(models))

    def split(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named contiguous [K, *shape] views of a tensor laid out like ``data``."""
        pieces = flat.split([self.K * size for size in self.sizes])
        return {n: piece.view(self.K, *shape) for n, piece, shape in zip(self.names, pieces, self.shapes)}

    def select(self, flat: torch.Tensor, slots: list[int]) -> torch.Tensor:
        """The given members' part of a tensor laid out like ``data``, in the layout of a smaller stack."""
        index = torch.tensor(slots)
        return torch.cat([v.index_select(0, index).reshape(-1) for v in self.split(flat).values()])

    def offset(self, name: str) -> int:
        return self.K * sum(self.sizes[: self.names.index(name)])

    def per_param(self, small: torch.Tensor) -> torch.Tensor:
        """[K, n_params] -> laid out like ``data``: each value over its parameter's elements."""
        return small.t().reshape(-1).repeat_interleave(self._counts, output_size=self.data.numel())

    def member(self, k: int) -> list[torch.Tensor]:
        return [v[k].clone() for v in self.views.values()]

    def set_member_(self, k: int, values: list[torch.Tensor]) -> None:
        for v, value in zip(self.views.values(), values):
            v[k] = value


class _CohortMLP:
    """Forward and backward of K stacked TabularMLPs on per-member batches.

    Codes [K, B, C], numeric [K, B, N]. Output column d of the embeddings is column e of
    table j; member k's table j starts at o_jk in ``data``, so its value is
    ``data[o_jk + c_j * w_j + e]``: one gather for all columns and members, one
    ``index_add`` back. a_i = h_{i-1} W_i^T + b_i per member (``baddbmm``), h_i = relu(a_i);
    backward as in ``mlp_function.backward_pass`` with ``bmm``: dW_i = g_i^T h_{i-1},
    db_i = sum over rows of g_i, g_{i-1} = (g_i W_i) * [h_{i-1} > 0].
    """

    def __init__(self, stack: _Stack, model: TabularMLP) -> None:
        self.stack = stack
        tables = model.tables()
        layout = layout_for(tables, torch.device("cpu"))  # one member's flat tables: table j at s_j
        self.n_tables, self.width = len(tables), layout.width_total
        self.table_elements = stack.K * layout.numel
        self.column, self.col_width = layout.column, layout.width
        # o_jk + e = (s_j + e) - s_j + (start of table j's block in data) + k * (elements of table j)
        starts = torch.tensor([sum(layout.numels[:j]) for j in range(len(tables))], dtype=torch.long)
        blocks = torch.tensor([stack.offset(n) for n in stack.names[: len(tables)]], dtype=torch.long)
        numels = torch.tensor(layout.numels, dtype=torch.long)
        j = layout.column
        member = torch.arange(stack.K).view(-1, 1) * numels[j]
        self.base = (layout.base - starts[j] + blocks[j] + member).unsqueeze(1)  # [K, 1, D]
        names = stack.names[self.n_tables :]
        self.layers = list(zip(names[0::2], names[1::2]))  # (weight, bias) per Linear, head last

    def forward(self, codes: torch.Tensor, numeric: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list]:
        v = self.stack.views
        per_column = torch.gather(codes, 2, self.column.expand(*codes.shape[:2], -1))
        lookup = torch.addcmul(self.base, per_column, self.col_width)
        h = torch.cat([self.stack.data.index_select(0, lookup.reshape(-1)).view(lookup.shape), numeric], dim=2)
        hidden = [h]
        for w, b in self.layers[:-1]:
            h = torch.baddbmm(v[b].unsqueeze(1), h, v[w].transpose(1, 2)).relu_()
            hidden.append(h)
        w, b = self.layers[-1]
        return torch.baddbmm(v[b].unsqueeze(1), h, v[w].transpose(1, 2)), lookup, hidden

    def backward(self, g: torch.Tensor, lookup: torch.Tensor, hidden: list, grad: torch.Tensor) -> None:
        """Write dL/d(parameters) for the output gradient g [K, B, 1] into ``grad``."""
        v, gv = self.stack.views, self.stack.split(grad)
        for i in range(len(self.layers) - 1, -1, -1):
            w, b = self.layers[i]
            torch.bmm(g.transpose(1, 2), hidden[i], out=gv[w])
            torch.sum(g, dim=1, out=gv[b])
            if i > 0:
                g = torch.ops.aten.threshold_backward(torch.bmm(g, v[w]), hidden[i], 0)
        grad_emb = torch.bmm(g, v[self.layers[0][0]][:, :, : self.width])
        grad[: self.table_elements].zero_()
        grad.index_add_(0, lookup.reshape(-1), grad_emb.reshape(-1))


@dataclass
class _Member:
    plan: Strategy
    lr: float
    gen: torch.Generator
    phase: int = 0
    epoch: int = 0
    phase_epochs: int = 0
    best: tuple[float, int | None, list[torch.Tensor] | None] = (math.inf, None, None)
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


class _FlatAdam:
    """Adam over the flat layout: per-element moments, a step count per member and parameter.

    With on = 1 where the element's member trains it now (0 where frozen or not yet in the
    optimizer), r its learning rate and t its parameter's count:
    m += (1 - b1) on (g - m), v += (1 - b2) on (g^2 - v),
    w -= r / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
    Elements that never trained keep m = 0 and never move. Every trained count grows by one
    per step, so between mask changes the counts take a few fixed offsets (one, or two in
    lp-ft's second phase); the bias corrections are applied per offset group.
    """

    def __init__(self, stack: _Stack) -> None:
        self.stack = stack
        self.m, self.v = torch.zeros_like(stack.data), torch.zeros_like(stack.data)
        self.steps = torch.zeros(stack.K, len(stack.names))

    def set_masks(self, rate: torch.Tensor, trains: torch.Tensor, on: torch.Tensor) -> None:
        """rate and on laid out like the parameters; trains [K, n_params] (counted this phase)."""
        self.rate, self.trains = rate, trains
        self.w1, self.w2 = on * (1 - BETAS[0]), on * (1 - BETAS[1])
        self._regroup()

    def _regroup(self) -> None:
        self.elapsed = 0
        counts = sorted({float(c) for c in self.steps[self.trains > 0].tolist()})
        self.groups = [(c, self.stack.per_param(((self.steps == c) & (self.trains > 0)).float())) for c in counts]

    def step(self, grad: torch.Tensor, present: torch.Tensor | None = None) -> None:
        """One step; ``present`` [K] (0/1) marks the members that had a batch (default all)."""
        if present is not None:
            self._step_some(grad, present)
            return
        if self.groups is None:
            self._regroup()
        self.steps += self.trains
        self.elapsed += 1
        self.m.lerp_(grad, self.w1)
        self.v.lerp_(grad.square(), self.w2)
        denom = self.v.sqrt()
        if len(self.groups) == 1:
            t = self.groups[0][0] + self.elapsed
            denom.mul_(1 / math.sqrt(1 - BETAS[1] ** t)).add_(EPS)
            self.stack.data.addcdiv_(self.m * self.rate, denom, value=-1 / (1 - BETAS[0] ** t))
            return
        inv_c1, inv_c2 = torch.zeros_like(denom), torch.zeros_like(denom)
        for count, mask in self.groups:
            t = count + self.elapsed
            inv_c1.add_(mask, alpha=1 / (1 - BETAS[0] ** t))
            inv_c2.add_(mask, alpha=1 / math.sqrt(1 - BETAS[1] ** t))
        denom.mul_(inv_c2).add_(EPS)
        self.stack.data.addcdiv_(self.m * self.rate * inv_c1, denom, value=-1)

    def _step_some(self, grad: torch.Tensor, present: torch.Tensor) -> None:
        """A step in which only some members have rows (the ends of epochs over subsets of
        different sizes): the others keep weights, moments and counts. Per-element bias
        corrections; the counts no longer move together, so the groups are rebuilt after."""
        n = len(self.stack.names)
        self.steps += self.trains * present.view(-1, 1)
        here = self.stack.per_param(present.view(-1, 1).expand(-1, n))
        self.m.lerp_(grad, self.w1 * here)
        self.v.lerp_(grad.square(), self.w2 * here)
        t = self.steps.clamp(min=1)
        denom = self.v.sqrt().mul_(self.stack.per_param((1 - BETAS[1] ** t).rsqrt())).add_(EPS)
        step_size = self.rate * here * self.stack.per_param(1 / (1 - BETAS[0] ** t))
        self.stack.data.addcdiv_(self.m * step_size, denom, value=-1)
        self.groups = None


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
    val: Validation | None = None,
    patience: int = 10,
    subsets: Sequence[torch.Tensor] | None = None,
    vals: Sequence[Validation] | None = None,
) -> list[FitResult]:
    """Train every model at once, each with its own strategy, lr, seed and rows.

    Equivalent to ``fit(models[k], X_k, y_k, strategy=..., lr=..., seed=..., val=val_k, ...)``
    for every k (Adam, no weight decay), where X_k, y_k are the rows ``subsets[k]`` (default:
    all rows) and val_k is ``val`` (shared) or ``vals[k]`` (one validation set per member).
    The models' weights are replaced by the results.
    """
    K = len(models)
    if not (K == len(strategies) == len(lrs) == len(seeds)) or K == 0:
        raise ConfigError("a cohort needs one strategy, learning rate and seed per model")
    names = [n for n, _ in models[0].named_parameters()]
    if any([n for n, _ in m.named_parameters()] != names or
           [p.shape for p in m.parameters()] != [p.shape for p in models[0].parameters()] for m in models):
        raise ConfigError("a cohort needs models of one architecture and size")
    cat, num = X
    check = layout_for(models[0].tables(), cat.device).check
    check(cat)
    if val is not None and vals is not None:
        raise ConfigError("give one shared validation set (val) or one per model (vals), not both")
    vals = [val] * K if val is not None else None if vals is None else list(vals)
    if vals is not None and len(vals) != K:
        raise ConfigError("a cohort needs one validation set per model")
    for v in {id(v): v for v in vals or []}.values():
        check(v[0][0])
    n_rows = y.shape[0]
    subsets = [torch.arange(n_rows)] * K if subsets is None else [torch.as_tensor(r, dtype=torch.long) for r in subsets]
    if len(subsets) != K or any(len(r) == 0 or r.min() < 0 or r.max() >= n_rows for r in subsets):
        raise ConfigError(f"a cohort needs one non-empty subset of the {n_rows} row indices per model")
    plans = [parse_strategy(s) if isinstance(s, str) else s for s in strategies]
    members = []
    for m, plan, lr, seed in zip(models, plans, lrs, seeds):
        if plan.reinit:
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                init_(m, "default")
        members.append(_Member(plan, float(lr), torch.Generator().manual_seed(seed)))
    results = [FitResult(m.plan.name) for m in members]
    run = _Run(models, members)
    while run.live:
        perms = [subsets[k][torch.randperm(len(subsets[k]), generator=members[k].gen)] for k in run.live]
        for idx, weight in _batches(perms, batch_size):
            run.train_step(cat, num, y, idx, weight)
        with torch.no_grad():
            val_loss = None if vals is None else run.validation_loss([vals[k] for k in run.live])
            phase_changed = False
            for slot, k in enumerate(run.live):
                member = members[k]
                member.epoch += 1
                member.phase_epochs += 1
                results[k].history.append({"epoch": member.epoch, "phase": member.plan.phases[member.phase].name,
                                           **({"val_loss": float(val_loss[slot])} if val_loss is not None else {})})
                stop = False
                if val_loss is not None:
                    if float(val_loss[slot]) < member.best[0]:
                        member.best = (float(val_loss[slot]), member.epoch, run.stack.member(slot))
                        member.stale = 0
                    else:
                        member.stale += 1
                        stop = member.stale >= patience
                        results[k].stopped_early |= stop
                if stop or member.phase_epochs >= _budget(member, epochs):
                    if member.best[2] is not None:
                        run.stack.set_member_(slot, member.best[2])
                        results[k].best_epoch, results[k].best_val_loss = member.best[1], member.best[0]
                    member.phase += 1
                    member.phase_epochs, member.stale = 0, 0
                    member.best = (math.inf, None, None)
                    if member.phase >= len(member.plan.phases) or member.epoch >= epochs:
                        member.done = True
                    else:
                        run.enter_phase(slot)
                        phase_changed = True
            if any(members[k].done for k in run.live):
                run.drop_finished()
            elif phase_changed:
                run.refresh_masks()
    for k, r in enumerate(results):
        r.epochs_run = members[k].epoch
    return results


def _budget(member: _Member, epochs: int) -> int:
    """Epochs the member's current phase may still run."""
    phase = member.plan.phases[member.phase]
    if len(member.plan.phases) == 1:
        return epochs
    return min(phase.max_epochs or epochs, epochs - (member.epoch - member.phase_epochs))


def _batches(perms: list[torch.Tensor], batch_size: int):
    """Per step: row indices [K, B] and, when members' batches differ in size, per-row
    weights [K, B] (1/b_k for member k's b_k real rows, 0 for padding; a member whose
    epoch has ended has none). Equal-sized subsets give plain [K, B] steps (weights None)."""
    if len({len(p) for p in perms}) == 1:
        stacked = torch.stack(perms)
        for start in range(0, stacked.shape[1], batch_size):
            yield stacked[:, start : start + batch_size], None
        return
    for start in range(0, max(len(p) for p in perms), batch_size):
        parts = [p[start : start + batch_size] for p in perms]
        width = max(len(part) for part in parts)
        idx = torch.zeros(len(parts), width, dtype=torch.long)
        weight = torch.zeros(len(parts), width)
        for k, part in enumerate(parts):
            idx[k, : len(part)] = part
            weight[k, : len(part)] = 1.0 / len(part) if len(part) else 0.0
        yield idx, weight


class _Run:
    """The members still training (``live``: member indices, one stack slot each) and
    everything laid out per slot: weights, Adam state, per-element rates, L2-SP anchors.
    A member that finishes goes back into its model and leaves the stack: a finished model
    stops costing compute."""

    def __init__(self, models: Sequence[TabularMLP], members: list[_Member]) -> None:
        self.models, self.members = models, members
        self.live = list(range(len(models)))
        self.stack = _Stack.of(models)
        self.adam = _FlatAdam(self.stack)
        self.alpha = torch.tensor([m.plan.l2sp_alpha or 0.0 for m in members])
        self.anchor = self.stack.data.clone() if self.alpha.any() else None
        self.rate = torch.zeros_like(self.stack.data)  # per element: its learning rate, 0 where frozen
        self.in_optimizer = torch.zeros(len(models), len(self.stack.names), dtype=torch.bool)
        for slot in range(len(models)):
            self.enter_phase(slot)
        self._rebuild()

    def _rebuild(self) -> None:
        self.net = _CohortMLP(self.stack, self.models[0])
        self.grad = torch.zeros_like(self.stack.data)
        self.refresh_masks()

    def enter_phase(self, slot: int) -> None:
        k = self.live[slot]
        member, rates = self.members[k], self.stack.split(self.rate)
        for i, (n, r) in enumerate(_phase_masks(self.models[k], member.plan, member.phase, member.lr).items()):
            rates[n][slot] = r
            self.in_optimizer[slot, i] |= self.models[k].get_parameter(n).requires_grad

    def refresh_masks(self) -> None:
        on = (self.rate > 0).float()
        self.adam.set_masks(self.rate, self.in_optimizer.float(), on)
        self.penalty_weight = None
        if self.anchor is not None:  # L2-SP: dL/dw += alpha (w - w0) where the member trains w
            n = len(self.stack.names)
            self.penalty_weight = on * self.stack.per_param(self.alpha.view(-1, 1).expand(-1, n))

    def drop_finished(self) -> None:
        """Write finished members into their models and shrink every per-slot tensor."""
        keep = [slot for slot, k in enumerate(self.live) if not self.members[k].done]
        with torch.no_grad():
            for slot, k in enumerate(self.live):
                if self.members[k].done:
                    for n, p in self.models[k].named_parameters():
                        p.copy_(self.stack.views[n][slot])
        old, index = self.stack, torch.tensor(keep, dtype=torch.long)
        self.live = [self.live[slot] for slot in keep]
        if not keep:
            return
        self.stack = _Stack(old.names, old.shapes, old.select(old.data, keep), len(keep))
        m, v, steps = old.select(self.adam.m, keep), old.select(self.adam.v, keep), self.adam.steps[index]
        self.adam = _FlatAdam(self.stack)
        self.adam.m, self.adam.v, self.adam.steps = m, v, steps
        self.rate = old.select(self.rate, keep)
        self.in_optimizer = self.in_optimizer[index]
        self.alpha = self.alpha[index]
        if self.anchor is not None:
            self.anchor = old.select(self.anchor, keep)
        self._rebuild()

    def train_step(self, cat: torch.Tensor, num: torch.Tensor, y: torch.Tensor, idx: torch.Tensor,
                   weight: torch.Tensor | None = None) -> None:
        """One Adam step of every live member on its batch (row indices idx [K, B]; per-row
        weights from ``_batches`` when batches differ in size: loss = sum_b w_kb (out - y)^2)."""
        rows, shape = idx.reshape(-1), (*idx.shape, -1)
        out, lookup, hidden = self.net.forward(cat.index_select(0, rows).view(shape),
                                               num.index_select(0, rows).view(shape))
        diff = out.sub_(y.index_select(0, rows).view(shape))
        if weight is None:
            per_member = diff.square().mean(dim=(1, 2))
            scale = 2.0 / idx.shape[1]
        else:
            scale = (2.0 * weight).unsqueeze(2)
            per_member = (diff.square().squeeze(2) * weight).sum(1)
        if not math.isfinite(per_member.sum().item()):
            bad = [self.members[k].plan.name for slot, k in enumerate(self.live) if not torch.isfinite(per_member[slot])]
            raise TrainingDivergedError(f"the loss became non-finite for cohort member(s) {bad}")
        self.net.backward(diff.mul_(scale), lookup, hidden, self.grad)
        if self.penalty_weight is not None:
            self.grad.addcmul_(self.stack.data - self.anchor, self.penalty_weight)
        present = None if weight is None or bool((weight[:, 0] > 0).all()) else (weight[:, 0] > 0).float()
        self.adam.step(self.grad, present)

    @torch.no_grad()
    def validation_loss(self, vals: list[Validation]) -> torch.Tensor:
        """Mean squared error of each live member on its validation set [K]."""
        K = len(self.live)
        if all(v is vals[0] for v in vals):
            (vc, vn), vy = vals[0]
            vo, _, _ = self.net.forward(vc.expand(K, *vc.shape), vn.expand(K, *vn.shape))
            return (vo - vy).pow(2).mean(dim=(1, 2))
        width = max(len(v[1]) for v in vals)
        pad = [(torch.arange(width) % len(v[1])) for v in vals]  # repeat rows to the longest set
        vc = torch.stack([v[0][0][p] for v, p in zip(vals, pad)])
        vn = torch.stack([v[0][1][p] for v, p in zip(vals, pad)])
        vy = torch.stack([v[1][p] for v, p in zip(vals, pad)])
        weight = torch.stack([(torch.arange(width) < len(v[1])).float() / len(v[1]) for v in vals])
        vo, _, _ = self.net.forward(vc, vn)
        return ((vo - vy).pow(2).squeeze(2) * weight).sum(1)
