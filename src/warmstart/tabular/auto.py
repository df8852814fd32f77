"""``auto``: choose a fine-tuning strategy and learning rate by grouped k-fold
cross-validation on the target training rows only, then refit on all of them.

The candidates include re-centring the source model without any gradient step, and
training from scratch, so ``auto`` can honestly answer "do not fine-tune" or "do not
transfer". The score is the mean absolute error on the held-out fold, in the target's
own units; each fold's fine-tuning early-stops on that fold.

With a few dozen rows the fold scores are noisy, and picking the bare minimum among
seven candidates mostly picks noise. ``auto`` therefore applies the one-standard-error
rule (Breiman et al. 1984): the simplest candidate (in ``CANDIDATES`` order) whose mean
CV error is within one standard error of the best one's.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from ..errors import DataError
from ..recenter import recenter_output_
from ..strategies import parse_strategy
from .encoding import Preprocessing, extend_vocabulary
from .model import TabularMLP
from .split import group_ids

RECENTERED = "recentered"
# (strategy, learning rate); RECENTERED means: shift the output, train nothing.
CANDIDATES: tuple[tuple[str, float | None], ...] = (
    (RECENTERED, None),
    ("probe", 1e-3),
    ("lp-ft", 3e-4),
    ("freeze:1", 1e-3),
    ("l2sp", 1e-3),
    ("full", 3e-4),
    ("scratch", 1e-3),
)


@dataclass
class AutoChoice:
    strategy: str
    lr: float | None
    scores: dict[str, float] = field(default_factory=dict)  # "strategy@lr" -> mean CV MAE
    folds: int = 0
    lowest: str = ""  # the candidate with the lowest mean CV MAE
    tolerance: float = 0.0  # one standard error of the lowest

    @property
    def label(self) -> str:
        return self.strategy if self.lr is None else f"{self.strategy}@{self.lr:g}"

    def reason(self) -> str:
        best = self.scores[self.lowest]
        if self.lowest == self.label:
            return (f"{self.folds}-fold grouped CV on the training rows: {self.label} had the lowest "
                    f"mean MAE {best:,.0f}")
        return (f"{self.folds}-fold grouped CV on the training rows: {self.lowest} had the lowest mean MAE "
                f"{best:,.0f}; the simpler {self.label} ({self.scores[self.label]:,.0f}) is within one "
                f"standard error ({self.tolerance:,.0f}) of it")


def grouped_folds(groups: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """Row indices of ``k`` folds; each group lands whole in one fold (seeded)."""
    unique = np.random.default_rng(seed).permutation(np.unique(groups))
    fold_of = {g: i % k for i, g in enumerate(unique)}
    assignment = np.array([fold_of[g] for g in groups])
    return [np.flatnonzero(assignment == i) for i in range(k)]


def recentered_model(
    source_model: TabularMLP, source_prep: Preprocessing, frame: pd.DataFrame, y: np.ndarray, idx: np.ndarray
) -> tuple[TabularMLP, Preprocessing]:
    from .workflow import transfer_model

    model, prep, _ = transfer_model(source_model, source_prep, frame.iloc[idx])
    cat, num, _ = prep.encode(frame.iloc[idx])
    recenter_output_(model, (cat, num), prep.encode_target(y[idx]))
    return model, prep


def fold_codes(source_prep: Preprocessing, all_prep: Preprocessing, frame: pd.DataFrame,
               train_idx: np.ndarray, val_idx: np.ndarray) -> torch.Tensor:
    """The validation rows' category codes in ``all_prep``'s vocabulary (extended on every
    row), as the fold's own vocabulary (extended on its training rows only) sees them: a
    target category no training row of the fold has is ``<unknown>`` there (or ``<other>``
    if the source found it rare), whatever row it has in the larger vocabulary."""
    fold_prep, _ = extend_vocabulary(source_prep, frame.iloc[train_idx])
    cat, _, _ = fold_prep.encode(frame.iloc[val_idx])
    for j, col in enumerate(fold_prep.categorical):
        index = {v: i for i, v in enumerate(all_prep.categorical[col])}
        mapping = torch.tensor([0, 1] + [index[v] for v in fold_prep.categorical[col][2:]])
        cat[:, j] = mapping[cat[:, j]]
    return cat


def cross_validate_cohort(
    source_model: TabularMLP,
    source_prep: Preprocessing,
    frame: pd.DataFrame,
    y: np.ndarray,
    fold_rows: list[np.ndarray],
    networks: Sequence[tuple[str, float | None]],
    *,
    seed: int,
    epochs: int,
    patience: int,
    batch_size: int,
) -> dict[tuple[str, float | None], list[float]]:
    """Held-out MAE per fold of every network candidate, all folds x candidates trained as
    one cohort (``fit_cohort`` with a row subset and a validation set per member).

    One model architecture serves every fold: the vocabulary is extended on all rows, and
    each fold's validation codes are those its own vocabulary would give (``fold_codes``),
    so a category only the held-out fold has reaches the model as ``<unknown>``, exactly
    as when each fold's model is built from its training rows alone. Rows that no fold
    training row uses never receive a gradient and are never read.
    """
    from .cohort import fit_cohort
    from .workflow import transfer_model

    base, prep, _ = transfer_model(source_model, source_prep, frame)
    cat, num, _ = prep.encode(frame)
    z = prep.encode_target(y)
    splits = [(np.concatenate([f for j, f in enumerate(fold_rows) if j != i]), val) for i, val in enumerate(fold_rows)]
    members = [(i, c) for i in range(len(splits)) for c in networks]
    models, subsets, vals = [], [], []
    fold_val = [(fold_codes(source_prep, prep, frame, tr, va), num[va], z[va]) for tr, va in splits]
    for i, (strategy, _) in members:
        train_idx = torch.from_numpy(splits[i][0])
        model = copy.deepcopy(base)
        if not parse_strategy(strategy).reinit:
            recenter_output_(model, (cat[train_idx], num[train_idx]), z[train_idx])
        models.append(model)
        subsets.append(train_idx)
        vc, vn, vz = fold_val[i]
        vals.append(((vc, vn), vz))
    fit_cohort(models, (cat, num), z, strategies=[c[0] for _, c in members], lrs=[float(c[1]) for _, c in members],
               seeds=[seed] * len(members), epochs=epochs, batch_size=batch_size, subsets=subsets, vals=vals,
               patience=patience)
    errors: dict[tuple[str, float | None], list[float]] = {c: [] for c in networks}
    for model, (i, c) in zip(models, members):
        if parse_strategy(c[0]).reinit:
            model.set_unknown_rows_()
        vc, vn, _ = fold_val[i]
        model.train(False)
        with torch.no_grad():
            pred = prep.decode_target(model(vc, vn))
        if not np.isfinite(pred).all():
            raise DataError(f"cross-validating {c[0]} produced non-finite predictions")
        errors[c].append(float(np.abs(pred - y[splits[i][1]]).mean()))
    return errors


def choose_strategy(
    source_model: TabularMLP,
    source_prep: Preprocessing,
    frame: pd.DataFrame,
    y: np.ndarray,
    *,
    seed: int,
    folds: int = 5,
    candidates: Sequence[tuple[str, float | None]] = CANDIDATES,
    epochs: int = 200,
    patience: int = 20,
    batch_size: int = 32,
    cohort: bool = True,
    on_fit: Callable[[int, int, str], None] | None = None,
) -> AutoChoice:
    """Score every candidate by grouped k-fold CV on ``frame``; return the best.

    ``on_fit(done, total, label)`` is called after each of the k x candidates fits.
    """
    from .workflow import predict_frame, train_split, transfer_model

    groups = group_ids(frame, source_prep.columns)
    k = int(min(folds, len(np.unique(groups))))
    if k < 2:
        raise DataError("auto needs at least two distinct training rows to cross-validate")
    fold_rows = grouped_folds(groups, k, seed)
    errors: dict[tuple[str, float | None], list[float]] = {c: [] for c in candidates}
    networks = [c for c in candidates if c[0] != RECENTERED]
    done = 0
    if cohort and networks:  # every fold's network candidates as one cohort
        for c, fold_errors in cross_validate_cohort(source_model, source_prep, frame, y, fold_rows, networks,
                                                    seed=seed, epochs=epochs, patience=patience,
                                                    batch_size=batch_size).items():
            errors[c] = fold_errors
        done = k * len(networks)
        if on_fit is not None:
            on_fit(done, k * len(candidates), f"{k} folds x {len(networks)} candidates")
    for i, val_idx in enumerate(fold_rows):
        train_idx = np.concatenate([f for j, f in enumerate(fold_rows) if j != i])
        for strategy, lr in candidates:
            if cohort and (strategy, lr) in networks:
                continue
            if strategy == RECENTERED:
                model, prep = recentered_model(source_model, source_prep, frame, y, train_idx)
            else:
                model, prep, _ = transfer_model(source_model, source_prep, frame.iloc[train_idx])
                train_split(model, prep, frame, y, train_idx, val_idx, strategy=strategy, lr=float(lr),
                            epochs=epochs, batch_size=batch_size, seed=seed, patience=patience, recenter=True)
            pred, _ = predict_frame(model, prep, frame.iloc[val_idx])
            errors[(strategy, lr)].append(float(np.abs(pred - y[val_idx]).mean()))
            done += 1
            if on_fit is not None:
                on_fit(done, k * len(candidates), f"fold {i + 1}/{k}: {strategy}")
    scores = {c: float(np.mean(e)) for c, e in errors.items()}
    lowest = min(scores, key=scores.get)
    se = float(np.std(errors[lowest], ddof=1) / np.sqrt(k))
    chosen = next(c for c in candidates if scores[c] <= scores[lowest] + se)
    label = {c: (c[0] if c[1] is None else f"{c[0]}@{c[1]:g}") for c in candidates}
    return AutoChoice(chosen[0], chosen[1], {label[c]: s for c, s in scores.items()}, k, label[lowest], se)
