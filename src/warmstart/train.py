"""``fit``: the one trainer, for any model whose inputs are tensors held in memory.

Batches are index slices of tensors already in memory (no per-row Dataset). Training is
seeded, honours the strategy's phases (frozen sets, row freezes, frozen BatchNorm),
learning-rate groups and L2-SP penalty, early-stops on a validation set and restores the
best weights, and stops at the first non-finite loss keeping the last finite weights.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import torch
from torch import nn

from .device import resolve_device
from .errors import ConfigError, DataError, TrainingDivergedError
from .freeze import restore_frozen_rows_, train_mode_
from .fused_step import FusedStep
from .init import activation_problem, init_, trace_activations
from .param_groups import add_param_groups_, make_optimizer, param_groups
from .regularize import L2SP
from .strategies import Strategy, apply_phase_, parse_strategy

Inputs = Union[torch.Tensor, Sequence[torch.Tensor]]


@dataclass
class FitResult:
    strategy: str
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    best_val_loss: float | None = None
    epochs_run: int = 0
    stopped_early: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "history"}


@dataclass
class TrainState:
    """Everything needed to continue a run exactly where it stopped (end of an epoch).

    ``fit(..., on_state=...)`` hands one out after every epoch; ``fit(..., resume=state)``
    with the same data and arguments continues bit for bit (same seed, CPU).
    """

    epoch: int
    phase: int  # index of the phase in progress
    phase_epochs: int  # epochs done in that phase
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    generator: torch.Tensor
    best: tuple[float, int | None, dict[str, torch.Tensor] | None]
    stale: int
    history: list[dict[str, Any]]
    anchor: dict[str, torch.Tensor] | None  # L2-SP reference, fixed at the run's start


def _as_tuple(x: Inputs) -> tuple[torch.Tensor, ...]:
    return (x,) if isinstance(x, torch.Tensor) else tuple(x)


def _check(X: tuple[torch.Tensor, ...], y: torch.Tensor, what: str) -> None:
    n = y.shape[0]
    if n == 0:
        raise DataError(f"{what} set is empty")
    for t in X:
        if t.shape[0] != n:
            raise DataError(f"{what} inputs have {t.shape[0]} rows but the target has {n}")
    for t in (*X, y):
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise DataError(f"{what} data contains NaN or infinite values")


def _split(X, y, fraction: float, generator: torch.Generator):
    n = y.shape[0]
    n_val = max(1, int(round(n * fraction)))
    if n - n_val < 1:
        raise DataError(f"{n} rows are too few to carve a validation set of {fraction:.0%}")
    perm = torch.randperm(n, generator=generator)
    tr, va = perm[n_val:], perm[:n_val]
    return tuple(t[tr] for t in X), y[tr], tuple(t[va] for t in X), y[va]


@torch.no_grad()
def evaluate_loss(model: nn.Module, X: Inputs, y: torch.Tensor, loss_fn: Callable, chunk: int = 65536) -> float:
    """Mean loss over all rows, in eval mode, in chunks."""
    X = _as_tuple(X)
    was = model.training
    model.train(False)
    total = 0.0
    for start in range(0, y.shape[0], chunk):
        sl = slice(start, start + chunk)
        out = model(*(t[sl] for t in X))
        total += loss_fn(out, y[sl]).item() * y[sl].shape[0]
    model.train(was)
    return total / y.shape[0]


# Below this many parameters a training step is a chain of tiny ops, where extra threads
# only add synchronization: one thread is as fast and leaves the other cores free.
SMALL_MODEL = 1_000_000


@contextlib.contextmanager
def threads_for(model: nn.Module):
    """Use one intra-op thread while training a small model; restore the setting after."""
    before = torch.get_num_threads()
    small = sum(p.numel() for p in model.parameters()) < SMALL_MODEL
    if small and before > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def _first_bad(model: nn.Module, xb: tuple[torch.Tensor, ...]) -> str:
    """Name the first layer whose output is non-finite or explodes (std > 1e3) on ``xb``."""
    for name, out in trace_activations(model, xb).items():
        kind = activation_problem(out.float().std().item()) if torch.isfinite(out).all() else "non-finite"
        if kind in ("non-finite", "explode"):
            return f"{name} ({kind} activations)"
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            return f"{name} (non-finite weights)"
    return "none (activations finite; the loss overflowed)"


def batch_size_for(n_rows: int) -> int:
    """Rows per step for a training set of ``n_rows``: 64 up to 64,000 rows; above, the power
    of two closest to n/1000 (about 1,000 steps per epoch), at most 1,024.

    Small data need many updates per epoch, and a batch-64 step is already cheap; on large
    data a step costs nearly as much at 1,024 rows as at 64 (the per-step cost is mostly
    fixed), so larger batches cut an epoch's time several-fold (docs/performance.md).
    """
    if n_rows <= 64_000:
        return 64
    return int(min(1024, 2 ** round(math.log2(n_rows / 1000))))


def reads_loss_each_step(device: torch.device) -> bool:
    """Reading the loss each step costs nothing on the CPU; on a GPU it would wait for every
    step, so there the losses are checked once per epoch (weights return to the epoch's start)."""
    return torch.device(device).type == "cpu"


def _diverged(model: nn.Module, xb: tuple[torch.Tensor, ...], last_good: dict[str, torch.Tensor], epoch: int,
              step: int, lr: float, restore: bool = False) -> None:
    """Raise TrainingDivergedError naming the step and first bad layer; put back the
    weights from the start of the epoch if any went non-finite (or ``restore``)."""
    where = _first_bad(model, xb)
    if restore or any(not torch.isfinite(p).all() for p in model.parameters()):
        model.load_state_dict(last_good)
    raise TrainingDivergedError(
        f"the loss became non-finite at epoch {epoch}, step {step} (first bad layer: {where}); training stopped "
        f"with the last finite weights kept. Lower the learning rate (now {lr:g}) or check the initialization."
    )


def fit(
    model: nn.Module,
    X: Inputs,
    y: torch.Tensor,
    *,
    strategy: str | Strategy = "full",
    lr: float = 1e-3,
    epochs: int = 100,
    batch_size: int = 64,
    val: tuple[Inputs, torch.Tensor] | None = None,
    val_fraction: float = 0.0,
    patience: int = 10,
    seed: int = 0,
    weight_decay: float = 0.0,
    optimizer: str = "adam",
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    reference: Mapping[str, torch.Tensor] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    on_state: Callable[[TrainState], None] | None = None,
    resume: TrainState | None = None,
    device: str | torch.device | None = None,
) -> FitResult:
    """Train ``model`` on ``(X, y)`` with a named strategy; return the history.

    Early stopping: with ``val`` (or ``val_fraction`` > 0 carved at random from the rows),
    each phase stops after ``patience`` epochs without a better validation loss and the
    best weights are restored. Without validation data every phase runs its full budget.
    L2-SP anchors at ``reference`` (default: the weights ``fit`` starts from).
    ``on_state`` receives a ``TrainState`` after each epoch; ``resume`` continues from one.
    ``device`` (``cpu``, ``cuda``, ``auto``; default: where the model is) receives the model
    and the tensors once; batches are index slices there.
    """
    with threads_for(model):
        return _fit(model, X, y, strategy=strategy, lr=lr, epochs=epochs, batch_size=batch_size, val=val,
                    val_fraction=val_fraction, patience=patience, seed=seed, weight_decay=weight_decay,
                    optimizer=optimizer, loss_fn=loss_fn, reference=reference, on_epoch=on_epoch,
                    on_state=on_state, resume=resume, device=resolve_device(device, model))


def _fit(model, X, y, *, strategy, lr, epochs, batch_size, val, val_fraction, patience, seed, weight_decay,
         optimizer, loss_fn, reference, on_epoch, on_state, resume, device) -> FitResult:
    plan = parse_strategy(strategy) if isinstance(strategy, str) else strategy
    if epochs < 1 or batch_size < 1 or patience < 1:
        raise ConfigError("epochs, batch_size and patience must be at least 1")
    if not 0 <= val_fraction < 1:
        raise ConfigError(f"val_fraction must lie in [0, 1), got {val_fraction}")
    # The default loss on a model that computes its own mean-squared-error gradients
    # (TabularMLP: one hand-written backward pass instead of an autograd graph).
    own_gradients = getattr(model, "warmstart_mse_gradients", None) if loss_fn is None else None
    loss_fn = loss_fn or nn.functional.mse_loss
    gen = torch.Generator().manual_seed(seed)
    Xt, yt = _as_tuple(X), y
    _check(Xt, yt, "training")
    if val is None and val_fraction > 0:
        Xt, yt, Xv, yv = _split(Xt, yt, val_fraction, gen)
    elif val is not None:
        Xv, yv = _as_tuple(val[0]), val[1]
        _check(Xv, yv, "validation")
    else:
        Xv = yv = None
    model.to(device)
    Xt, yt = tuple(t.to(device) for t in Xt), yt.to(device)
    if Xv is not None:
        Xv, yv = tuple(t.to(device) for t in Xv), yv.to(device)

    if plan.reinit and resume is None:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            init_(model, "default")
    penalty = anchor = None
    if plan.l2sp_alpha is not None:
        anchor = resume.anchor if resume is not None else (
            dict(reference) if reference is not None
            else {k: v.detach().clone() for k, v in model.state_dict().items()})
        penalty = L2SP(model, anchor, plan.l2sp_alpha, plan.l2sp_beta)

    result = FitResult(plan.name)
    opt: torch.optim.Optimizer | None = None
    in_optimizer: set[str] = set()
    epoch = 0
    n = yt.shape[0]
    if resume is not None:
        model.load_state_dict(resume.model)
        gen.set_state(resume.generator)
        epoch, result.history = resume.epoch, copy.deepcopy(resume.history)
    check_each_step = reads_loss_each_step(device)
    for phase_index, phase in enumerate(plan.phases):
        # Every phase up to the resumed one is re-applied so the optimizer's groups are
        # rebuilt in the same order before its state is loaded.
        trainable = apply_phase_(model, phase)
        new = [name for name in trainable if name not in in_optimizer]
        groups = param_groups(model, lr, lr_decay=plan.lr_decay, weight_decay=weight_decay, only=new)
        if opt is None:
            opt = make_optimizer(groups, optimizer)
        elif groups:
            add_param_groups_(opt, groups)
        in_optimizer |= set(new)
        budget = min(phase.max_epochs or epochs, epochs - epoch) if len(plan.phases) > 1 else epochs
        best: tuple[float, int | None, dict | None] = (math.inf, None, None)  # (val loss, epoch, state)
        stale = done = 0
        if resume is not None:
            if phase_index < resume.phase:
                continue
            if phase_index == resume.phase:
                opt.load_state_dict(resume.optimizer)
                best, stale, done = copy.deepcopy(resume.best), resume.stale, resume.phase_epochs
                budget = (min(phase.max_epochs or epochs, epochs - epoch + done)
                          if len(plan.phases) > 1 else epochs)
        stopped = stale >= patience and Xv is not None
        stepper = FusedStep(opt)
        for _ in range(budget - done if not stopped else 0):
            epoch += 1
            done += 1
            started = time.perf_counter()
            last_good = copy.deepcopy(model.state_dict())
            train_mode_(model)
            perm = torch.randperm(n, generator=gen).to(device)  # CPU generator: same order on any device
            losses, total = [], 0.0
            mse_gradients = (own_gradients(Xt[0]) if own_gradients is not None and len(Xt) == 2
                             and yt.shape == (n, 1) else None)
            for step, start in enumerate(range(0, n, batch_size), 1):
                idx = perm[start : start + batch_size]
                xb = tuple(t.index_select(0, idx) for t in Xt)
                yb = yt.index_select(0, idx)
                if mse_gradients is not None:
                    loss, backward = mse_gradients(*xb, yb), None
                    if penalty is not None:
                        extra = penalty(model)
                        loss, backward = loss + extra.detach(), extra.backward  # adds to the gradients set
                else:
                    stepper.zero_grad()
                    loss = loss_fn(model(*xb), yb)
                    if penalty is not None:
                        loss = loss + penalty(model)
                    backward = loss.backward
                if check_each_step:
                    value = loss.item()
                    if not math.isfinite(value):
                        _diverged(model, xb, last_good, epoch, step, lr)
                    total += value
                else:
                    losses.append(loss.detach())
                if backward is not None:
                    backward()
                stepper.step()
                restore_frozen_rows_(model)
            if not check_each_step:
                stacked = torch.stack(losses)
                finite = torch.isfinite(stacked)
                if not finite.all():
                    step = int((~finite).nonzero()[0]) + 1
                    start = (step - 1) * batch_size
                    _diverged(model, tuple(t[perm[start : start + batch_size]] for t in Xt), last_good, epoch, step, lr,
                              restore=True)  # the steps after it trained on non-finite gradients
                total = stacked.sum().item()
            row: dict[str, Any] = {
                "epoch": epoch,
                "phase": phase.name,
                "train_loss": total / math.ceil(n / batch_size),
            }
            if Xv is not None:
                row["val_loss"] = evaluate_loss(model, Xv, yv, loss_fn)
            for g in opt.param_groups:
                row[f"lr_{g.get('name', 'group')}"] = g["lr"]
            row["seconds"] = round(time.perf_counter() - started, 4)
            result.history.append(row)
            if Xv is not None:
                if row["val_loss"] < best[0]:
                    best = (row["val_loss"], epoch, copy.deepcopy(model.state_dict()))
                    stale = 0
                else:
                    stale += 1
            if on_state is not None:
                on_state(TrainState(epoch, phase_index, done, copy.deepcopy(model.state_dict()),
                                    copy.deepcopy(opt.state_dict()), gen.get_state(), copy.deepcopy(best), stale,
                                    copy.deepcopy(result.history), anchor))
            if on_epoch is not None:
                on_epoch(row)
            if Xv is not None and stale >= patience:
                result.stopped_early = True
                break
        if best[2] is not None:
            model.load_state_dict(best[2])
            result.best_epoch, result.best_val_loss = best[1], best[0]
    result.epochs_run = epoch
    return result
