"""The transfer study: strategies x target sizes x seeds, against baselines, honestly.

Per seed (DESIGN.md, "Honest evaluation"):
1. pretrain the source model once on the source rows (early-stopped on a grouped split);
2. split the target rows, grouped so identical feature rows stay together, into a fixed
   test set and a pool; draw nested training subsets of each size from the pool;
3. on each subset train every strategy (early-stopped on a grouped validation split
   carved from the subset, never the test set) and fit every baseline;
4. score all of them on the same test set, in the target's own units.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from queue import Empty
from typing import Any

import numpy as np
import pandas as pd

from .errors import ConfigError, DataError
from .metrics import regression_metrics
from .strategies import parse_strategy
from .tabular import baselines as bl
from .tabular.auto import CANDIDATES, RECENTERED, choose_strategy, recentered_model
from .tabular.data import read_table, target_values
from .tabular.encoding import align
from .tabular.filters import apply_filters
from .tabular.split import group_ids, grouped_split
from .tabular.workflow import predict_frame, pretrain, train_many, train_split, transfer_model

DEFAULT_STRATEGIES = ("scratch", "full", "freeze:1", "probe", "lp-ft", "l2sp", "discriminative", "auto")
DEFAULT_BASELINES = tuple(bl.BASELINES)
# Learning rates per strategy family: scratch starts from random weights and needs a
# larger step; the transfer strategies start close to a good answer.
DEFAULT_LR = {"scratch": 1e-3, "full": 3e-4, "freeze": 1e-3, "probe": 1e-3, "lp-ft": 3e-4, "l2sp": 1e-3,
              "discriminative": 1e-3}
OnFit = Callable[[int, int, str], None]


def parse_method(text: str) -> tuple[str, float | None]:
    """``name`` or ``name@lr`` (e.g. ``full@1e-4``); the name is validated."""
    name, _, lr = text.strip().partition("@")
    if name != "auto":
        parse_strategy(name)
    if not lr:
        return name, None
    try:
        value = float(lr)
    except ValueError:
        raise ConfigError(f"'{text}': the learning rate after '@' is not a number") from None
    if value <= 0:
        raise ConfigError(f"'{text}': the learning rate must be positive")
    return name, value


def parse_sizes(text: str | Sequence[int | str]) -> list[int | str]:
    items = text.split(",") if isinstance(text, str) else list(text)
    sizes: list[int | str] = []
    for item in (str(i).strip() for i in items):
        if item == "all":
            sizes.append("all")
            continue
        try:
            n = int(item)
        except ValueError:
            raise ConfigError(f"target size '{item}' is not an integer or 'all'") from None
        if n < 4:
            raise ConfigError(f"target size {n} is too small: at least 4 rows (some are held out for early stopping)")
        sizes.append(n)
    if not sizes:
        raise ConfigError("give at least one target size, e.g. --sizes 25,50,100,all")
    return sizes


@dataclass
class StudySettings:
    data: str
    target: str
    source: list[str]
    target_rows: list[str]
    sizes: list[int | str]
    seeds: int
    strategies: list[str]
    baselines: list[str]
    test_fraction: float = 0.3
    val_fraction: float = 0.2
    epochs: int = 200
    patience: int = 20
    batch_size: int = 32
    auto_folds: int = 5
    dedupe: bool = True
    cohort: bool = True  # train the strategies of one cell (and auto's candidates) together


@dataclass
class StudyData:
    source: pd.DataFrame
    y_source: np.ndarray
    target: pd.DataFrame
    y_target: np.ndarray
    notes: list[str] = field(default_factory=list)


def load_study_data(settings: StudySettings) -> StudyData:
    df = read_table(settings.data)
    notes = []
    if settings.dedupe:
        before = len(df)
        df = df.drop_duplicates().reset_index(drop=True)
        notes.append(f"removed {before - len(df):,} exact duplicate rows ({len(df):,} left)")
    src = apply_filters(df, settings.source)
    tgt = apply_filters(df, settings.target_rows)
    overlap = len(pd.merge(src, tgt, how="inner"))
    if overlap:
        raise DataError(f"{overlap} rows match both the source and the target filters; make them disjoint")
    src, ys, ds = target_values(src, settings.target)
    tgt, yt, dt = target_values(tgt, settings.target)
    for name, dropped in (("source", ds), ("target", dt)):
        if dropped:
            notes.append(f"{name}: dropped {sum(dropped.values())} rows with an unusable target")
    return StudyData(src, ys, tgt, yt, notes)


@dataclass
class StudyResult:
    settings: StudySettings
    results: pd.DataFrame
    notes: list[str]
    alignment: str
    seconds: float
    path: Path | None = None


def split_target(frame: pd.DataFrame, columns: Sequence[str], test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(test rows, pool rows in draw order): grouped by identical features, seeded.

    Training subsets are prefixes of the pool order, so they are nested: the 50-row
    subset contains the 25-row one.
    """
    groups = group_ids(frame, columns)
    test_idx, pool_idx = grouped_split(groups, [test_fraction], seed)
    return test_idx, np.random.default_rng(seed + 10_000).permutation(pool_idx)


def _count_fits(settings: StudySettings, n_sizes: int) -> int:
    per_size = len(settings.baselines)
    for s in settings.strategies:
        per_size += 1 + (settings.auto_folds * len(CANDIDATES) if s == "auto" else 0)
    return settings.seeds * (1 + n_sizes * per_size)


def run_study(
    data: str,
    *,
    target: str,
    source: Sequence[str],
    target_rows: Sequence[str],
    sizes: str | Sequence[int | str] = (25, 50, 100, 200, "all"),
    seeds: int = 10,
    strategies: Sequence[str] = DEFAULT_STRATEGIES,
    baselines: Sequence[str] = DEFAULT_BASELINES,
    test_fraction: float = 0.3,
    epochs: int = 200,
    patience: int = 20,
    auto_folds: int = 5,
    dedupe: bool = True,
    workers: int | None = None,
    cohort: bool = True,
    on_fit: OnFit | None = None,
) -> StudyResult:
    """Run the whole study; return the long results table (one row per seed x size x method).

    ``workers`` processes run seeds side by side (default: one per core); results do not
    depend on it.
    """
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")
    if not 0 < test_fraction < 0.9:
        raise ConfigError(f"--test-fraction must lie in (0, 0.9), got {test_fraction}")
    for s in strategies:
        parse_method(s)
    bl.check_baselines(list(baselines))
    settings = StudySettings(str(data), target, list(source), list(target_rows), parse_sizes(sizes), seeds,
                             list(strategies), list(baselines), test_fraction, epochs=epochs, patience=patience,
                             auto_folds=auto_folds, dedupe=dedupe, cohort=cohort)
    study = load_study_data(settings)
    started = time.perf_counter()
    total = _count_fits(settings, len(settings.sizes))
    workers = max(1, min(workers if workers is not None else (os.cpu_count() or 1), seeds))
    runner = _run_parallel if workers > 1 else _run_sequential
    per_seed = runner(settings, study, total, on_fit, workers)
    rows = [row for seed_rows, _ in per_seed for row in seed_rows]
    return StudyResult(settings, pd.DataFrame(rows), study.notes, per_seed[0][1], time.perf_counter() - started)


SeedResult = tuple[list[dict[str, Any]], str]  # (result rows, alignment report text)


def _run_sequential(settings: StudySettings, study: StudyData, total: int, on_fit: OnFit | None,
                    workers: int) -> list[SeedResult]:
    done = 0

    def tick(label: str) -> None:
        nonlocal done
        done += 1
        if on_fit is not None:
            on_fit(done, total, label)

    return [run_seed(settings, study, seed, tick) for seed in range(settings.seeds)]


def _run_parallel(settings: StudySettings, study: StudyData, total: int, on_fit: OnFit | None,
                  workers: int) -> list[SeedResult]:
    """One seed per task over ``workers`` processes. Each seed is independent and seeded,
    so the results are the same as a sequential run's (only ``seconds`` differ)."""
    ctx = multiprocessing.get_context("spawn")  # fork after torch starts threads can hang
    with ctx.Manager() as manager, ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        queue = manager.Queue()
        futures = [pool.submit(_seed_task, settings, study, seed, queue) for seed in range(settings.seeds)]
        done = 0
        while not all(f.done() for f in futures) or not queue.empty():
            try:
                label = queue.get(timeout=0.2)
            except Empty:
                continue
            done += 1
            if on_fit is not None:
                on_fit(done, total, label)
        return [f.result() for f in futures]


def _seed_task(settings: StudySettings, study: StudyData, seed: int, queue: Any) -> SeedResult:
    # The workers already use every core between them: one thread each for torch and for
    # the BLAS/OpenMP pools behind numpy and scikit-learn.
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    with threadpool_limits(1):
        return run_seed(settings, study, seed, queue.put)


def run_seed(settings: StudySettings, study: StudyData, seed: int, tick: Callable[[str], None]) -> SeedResult:
    """Everything for one seed: the source model, the target split, every method and size."""
    target, epochs, patience = settings.target, settings.epochs, settings.patience
    rows: list[dict[str, Any]] = []
    src = pretrain(study.source, target=target, out=None, seed=seed, epochs=epochs, patience=patience)
    tick(f"seed {seed}: source model")
    test_idx, pool_order = split_target(study.target, src.prep.columns, settings.test_fraction, seed)
    test = study.target.iloc[test_idx].reset_index(drop=True)
    y_test = study.y_target[test_idx]
    seen_sizes: set[int] = set()
    # Rows keep the order of --baselines then --strategies, whichever way they were trained.
    order = {**{("baseline", b): i for i, b in enumerate(settings.baselines)},
             **{("strategy", s): len(settings.baselines) + i for i, s in enumerate(settings.strategies)}}
    for size in settings.sizes:
        n = len(pool_order) if size == "all" else min(int(size), len(pool_order))
        if n in seen_sizes:
            continue
        seen_sizes.add(n)
        take = pool_order[:n]  # nested: every smaller subset is a prefix of this one
        train = study.target.iloc[take].reset_index(drop=True)
        y_train = study.y_target[take]
        cell: list[dict[str, Any]] = []
        ctx = bl.Context(train, y_train, test, study.source, study.y_source, src.model, src.prep, seed,
                         lambda pooled, y, t: _pooled_mlp(pooled, y, t, target, seed, epochs, patience))
        for name in settings.baselines:
            t0 = time.perf_counter()
            pred = bl.BASELINES[name](ctx)
            cell.append(_row(seed, size, n, name, "baseline", y_test, pred, time.perf_counter() - t0, ""))
            tick(f"seed {seed}, {n} rows: {name}")
        together = [spec for spec in settings.strategies if spec != "auto"] if settings.cohort else []
        if together:
            t0 = time.perf_counter()
            outcomes = _cohort_strategies(together, src, train, y_train, test, settings, seed)
            seconds = (time.perf_counter() - t0) / len(together)
            for spec, (pred, detail) in zip(together, outcomes):
                cell.append(_row(seed, size, n, spec, "strategy", y_test, pred, seconds, detail))
                tick(f"seed {seed}, {n} rows: {spec}")
        for spec in settings.strategies:
            if spec in together:
                continue
            t0 = time.perf_counter()
            pred, detail = _strategy(spec, src, train, y_train, test, settings, seed,
                                     lambda label, k=n: tick(f"seed {seed}, {k} rows: auto {label}"))
            cell.append(_row(seed, size, n, spec, "strategy", y_test, pred, time.perf_counter() - t0, detail))
            tick(f"seed {seed}, {n} rows: {spec}")
        rows += sorted(cell, key=lambda r: order[(r["kind"], r["method"])])
    return rows, str(align(src.prep, study.target))


def _row(seed: int, subset: int | str, size: int, method: str, kind: str, y: np.ndarray, pred: np.ndarray,
         seconds: float, detail: str) -> dict[str, Any]:
    m = regression_metrics(y, pred)
    return {"seed": seed, "subset": str(subset), "size": size, "method": method, "kind": kind, "mae": m["mae"], "rmse": m["rmse"],
            "r2": m["r2"], "seconds": round(seconds, 3), "detail": detail}


def _pooled_mlp(pooled: pd.DataFrame, y: np.ndarray, test: pd.DataFrame, target: str, seed: int, epochs: int,
                patience: int) -> np.ndarray:
    run = pretrain(pooled.assign(**{target: y.astype(str)}), target=target, out=None, seed=seed, epochs=epochs,
                   patience=patience)
    return predict_frame(run.model, run.prep, test)[0]


def _validation_split(train: pd.DataFrame, columns: Sequence[str], settings: StudySettings,
                      seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(validation rows, training rows) carved from a training subset, grouped."""
    groups = group_ids(train, columns)
    if len(np.unique(groups)) < 2:
        raise DataError(f"{len(train)} training rows hold fewer than two distinct rows; use a larger size")
    val_idx, train_idx = grouped_split(groups, [settings.val_fraction], seed)
    return val_idx, train_idx


def _cohort_strategies(specs: Sequence[str], src, train: pd.DataFrame, y: np.ndarray, test: pd.DataFrame,
                       settings: StudySettings, seed: int) -> list[tuple[np.ndarray, str]]:
    """Every fixed strategy of one study cell, trained together on the same rows."""
    methods = [parse_method(spec) for spec in specs]
    lrs = [lr or DEFAULT_LR[name.split(":")[0]] for name, lr in methods]
    built = [transfer_model(src.model, src.prep, train) for _ in specs]
    prep = built[0][1]
    val_idx, train_idx = _validation_split(train, src.prep.columns, settings, seed)
    fits = train_many([m for m, _, _ in built], prep, train, y, train_idx, val_idx,
                      strategies=[name for name, _ in methods], lrs=lrs, epochs=settings.epochs,
                      batch_size=settings.batch_size, seed=seed, patience=settings.patience)
    return [(predict_frame(m, prep, test)[0], f"lr {lr:g}, best epoch {f.best_epoch}")
            for (m, _, _), lr, f in zip(built, lrs, fits)]


def _strategy(spec: str, src, train: pd.DataFrame, y: np.ndarray, test: pd.DataFrame, settings: StudySettings,
              seed: int, on_candidate: Callable[[str], None]) -> tuple[np.ndarray, str]:
    name, lr = parse_method(spec)
    detail = ""
    if name == "auto":
        choice = choose_strategy(src.model, src.prep, train, y, seed=seed, folds=settings.auto_folds,
                                 epochs=settings.epochs, patience=settings.patience,
                                 batch_size=settings.batch_size, cohort=settings.cohort,
                                 on_fit=lambda _d, _t, label: on_candidate(label))
        detail = f"chose {choice.label} ({choice.reason()})"
        if choice.strategy == RECENTERED:
            model, prep = recentered_model(src.model, src.prep, train, y, np.arange(len(train)))
            return predict_frame(model, prep, test)[0], detail
        name, lr = choice.strategy, choice.lr
    lr = lr or DEFAULT_LR[name.split(":")[0]]
    model, prep, _ = transfer_model(src.model, src.prep, train)
    val_idx, train_idx = _validation_split(train, src.prep.columns, settings, seed)
    fit, _, _ = train_split(model, prep, train, y, train_idx, val_idx, strategy=name, lr=lr,
                            epochs=settings.epochs, batch_size=settings.batch_size, seed=seed,
                            patience=settings.patience, recenter=True)
    detail = (detail + "; " if detail else "") + f"lr {lr:g}, best epoch {fit.best_epoch}"
    return predict_frame(model, prep, test)[0], detail


def settings_dict(settings: StudySettings) -> dict[str, Any]:
    return asdict(settings)
