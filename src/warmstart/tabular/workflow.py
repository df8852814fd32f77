"""The salary workflow as plain functions: pretrain, finetune, evaluate, predict, inspect.

Each mirrors one CLI command and returns data (the CLI prints it). Errors are
``WarmstartError``s that name the bad value and the fix.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import io
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..device import resolve_device
from ..errors import CheckpointError, ConfigError, DataError
from ..init import check_scheme, init_
from ..metrics import regression_metrics
from ..recenter import recenter_output_
from ..strategies import parse_strategy
from ..train import FitResult, TrainState, batch_size_for, fit
from ..weights import (
    LoadReport,
    load_checkpoint,
    load_pretrained,
    read_state,
    save_checkpoint,
    write_file_atomically,
)
from .auto import RECENTERED, AutoChoice, choose_strategy
from .data import read_table, target_values
from .encoding import AlignmentReport, Preprocessing, extend_vocabulary, fit_preprocessing
from .filters import apply_filters
from .model import TabularMLP
from .split import group_ids, grouped_split, row_fingerprints

OnEpoch = Callable[[dict[str, Any]], None]


@dataclass
class TargetRows:
    """Rows selected by the filters, with a usable target, and what was dropped."""

    frame: pd.DataFrame
    y: np.ndarray
    dropped: dict[str, int]
    total: int


def select_rows(data: str | Path | pd.DataFrame, rows: Sequence[str], target: str, *, strict: bool = False) -> TargetRows:
    df = data if isinstance(data, pd.DataFrame) else read_table(data)
    selected = apply_filters(df, rows) if rows else df.reset_index(drop=True)
    frame, y, dropped = target_values(selected, target, strict=strict)
    return TargetRows(frame, y, dropped, len(selected))


@dataclass
class RunSummary:
    model: TabularMLP
    prep: Preprocessing
    path: Path | None
    rows_train: int
    rows_val: int
    metrics: dict[str, float]
    fit: FitResult
    dropped: dict[str, int] = field(default_factory=dict)
    alignment: AlignmentReport | None = None
    load_report: LoadReport | None = None
    unknown: dict[str, int] = field(default_factory=dict)
    auto: AutoChoice | None = None
    lr: float | None = None
    batch_size: int | None = None


# Fingerprints of the rows a model saw are kept for up to this many distinct rows (16 hex
# characters each); beyond it config.json would grow past a few MB, and none are kept.
MAX_SEEN_ROWS = 100_000


def _split(frame: pd.DataFrame, prep: Preprocessing, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    groups = group_ids(frame, prep.columns)
    distinct = frame[prep.columns].drop_duplicates()
    train_idx, val_idx = (p for p in reversed(grouped_split(groups, [val_fraction], seed)))
    record = {
        "seed": seed,
        "val_fraction": val_fraction,
        "grouped_by": prep.columns,
        "groups": int(groups.max() + 1),
        "train_rows": int(len(train_idx)),
        "val_rows": int(len(val_idx)),
        "val_rows_sha256": hashlib.sha256(np.sort(val_idx).astype(np.int64).tobytes()).hexdigest(),
        # Feature-row fingerprints of every row used for training or early stopping.
        "seen_rows": sorted(set(row_fingerprints(distinct, prep.columns))) if len(distinct) <= MAX_SEEN_ROWS else [],
    }
    return train_idx, val_idx, record


def _tensors(prep: Preprocessing, frame: pd.DataFrame, idx: np.ndarray, device: torch.device
             ) -> tuple[tuple[torch.Tensor, torch.Tensor], dict[str, int]]:
    cat, num, unknown = prep.encode(frame.iloc[idx])
    return (cat.to(device), num.to(device)), unknown


def transfer_model(
    model: TabularMLP, prep: Preprocessing, frame: pd.DataFrame, new_categories: str = "mean"
) -> tuple[TabularMLP, Preprocessing, AlignmentReport]:
    """A copy of the source model whose vocabulary also covers ``frame``'s categories."""
    model = copy.deepcopy(model)
    prep, alignment = extend_vocabulary(prep, frame)
    model.extend_embeddings_({c: len(v) for c, v in prep.categorical.items()}, new_categories)
    return model, prep, alignment


def train_split(
    model: TabularMLP,
    prep: Preprocessing,
    frame: pd.DataFrame,
    y: np.ndarray,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    *,
    strategy: str,
    lr: float,
    epochs: int,
    batch_size: int,
    seed: int,
    patience: int,
    recenter: bool = False,
    from_own_init: bool = False,
    on_epoch: OnEpoch | None = None,
    device: str | torch.device = "cpu",
    on_state: Callable[[TrainState], None] | None = None,
    resume: TrainState | None = None,
) -> tuple[FitResult, float | None, dict[str, int]]:
    """Train on ``train_idx`` rows, early-stopped on ``val_idx`` rows; return the fit, the
    output shift applied first (``recenter``, never for ``scratch``) and unknown counts.

    A model trained from its own initialization (pretraining, ``scratch``) gets its
    ``<unknown>`` embedding rows set to the mean category afterwards.
    """
    dev = resolve_device(device)
    model.to(dev)
    X, unknown = _tensors(prep, frame, train_idx, dev)
    Xv, _ = _tensors(prep, frame, val_idx, dev)
    z, zv = prep.encode_target(y[train_idx]).to(dev), prep.encode_target(y[val_idx]).to(dev)
    if strategy == RECENTERED:  # auto's "no gradient step" answer
        return FitResult(RECENTERED), float(recenter_output_(model, X, z).item()), unknown
    shift = None
    if recenter and not parse_strategy(strategy).reinit:
        shift = float(recenter_output_(model, X, z).item())
    result = fit(model, X, z, strategy=strategy, lr=lr, epochs=epochs, batch_size=batch_size,
                 val=(Xv, zv), patience=patience, seed=seed, on_epoch=on_epoch, device=dev, on_state=on_state,
                 resume=resume)
    if from_own_init or parse_strategy(strategy).reinit:
        model.set_unknown_rows_()  # nothing was frozen, so nothing to keep bit-identical
    return result, shift, unknown


def train_many(
    models: Sequence[TabularMLP],
    prep: Preprocessing,
    frame: pd.DataFrame,
    y: np.ndarray,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    *,
    strategies: Sequence[str],
    lrs: Sequence[float],
    epochs: int,
    batch_size: int,
    seed: int,
    patience: int,
    recenter: bool = True,
) -> list[FitResult]:
    """``train_split`` for several models of one architecture on the same rows, trained
    together as a cohort (``tabular.cohort``): same results to float tolerance, a
    fraction of the time."""
    from .cohort import fit_cohort

    X, _ = _tensors(prep, frame, train_idx, torch.device("cpu"))
    Xv, _ = _tensors(prep, frame, val_idx, torch.device("cpu"))
    z, zv = prep.encode_target(y[train_idx]), prep.encode_target(y[val_idx])
    for model, strategy in zip(models, strategies):
        if recenter and not parse_strategy(strategy).reinit:
            recenter_output_(model, X, z)
    results = fit_cohort(models, X, z, strategies=strategies, lrs=lrs, seeds=[seed] * len(models), epochs=epochs,
                         batch_size=batch_size, val=(Xv, zv), patience=patience)
    for model, strategy in zip(models, strategies):
        if parse_strategy(strategy).reinit:
            model.set_unknown_rows_()
    return results


@torch.no_grad()
def predict_frame(model: TabularMLP, prep: Preprocessing, frame: pd.DataFrame) -> tuple[np.ndarray, dict[str, int]]:
    """Predictions on the original scale for every row of ``frame`` (and unknown counts)."""
    cat, num, unknown = prep.encode(frame)
    model.train(False)
    dev = resolve_device(None, model)
    z = torch.cat([model(cat[i : i + 65536].to(dev), num[i : i + 65536].to(dev)).cpu()
                   for i in range(0, len(frame), 65536)])
    pred = prep.decode_target(z)
    if not np.isfinite(pred).all():
        raise DataError(
            f"the model produced {int((~np.isfinite(pred)).sum())} non-finite predictions; "
            "the checkpoint may be damaged or the inputs far outside the training range"
        )
    return pred, unknown


def _train_and_save(
    model: TabularMLP,
    prep: Preprocessing,
    rows: TargetRows,
    *,
    strategy: str,
    lr: float,
    epochs: int,
    batch_size: int,
    seed: int,
    val_fraction: float,
    patience: int,
    out: str | os.PathLike[str] | None,
    overwrite: bool,
    config: dict[str, Any],
    on_epoch: OnEpoch | None,
    recenter: bool = False,
    from_own_init: bool = False,
    device: str = "cpu",
    resume: bool = False,
) -> RunSummary:
    train_idx, val_idx, split = _split(rows.frame, prep, val_fraction, seed)
    run_key = {"strategy": strategy, "lr": lr, "epochs": epochs, "batch_size": batch_size, "seed": seed,
               "patience": patience, "split": hashlib.sha256(json.dumps(split, sort_keys=True).encode()).hexdigest()}
    journal = ResumeJournal(Path(out), run_key) if out is not None else None
    result, shift, unknown = train_split(
        model, prep, rows.frame, rows.y, train_idx, val_idx, strategy=strategy, lr=lr, epochs=epochs,
        batch_size=batch_size, seed=seed, patience=patience, recenter=recenter, from_own_init=from_own_init,
        on_epoch=on_epoch, device=device, on_state=journal.write if journal else None,
        resume=journal.read() if journal and resume else None)
    pred, _ = predict_frame(model, prep, rows.frame.iloc[val_idx])
    metrics = regression_metrics(rows.y[val_idx], pred)
    config["training"].update({
        "strategy": result.strategy, "lr": lr, "epochs": epochs, "batch_size": batch_size, "seed": seed,
        "patience": patience, "epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early, "recenter_shift": shift, "device": str(resolve_device(device)),
    })
    config.update({
        "model": model.config(),
        "preprocessing": prep.to_json(),
        "target": {"column": prep.target, "scale": "log, standardized", "dropped": rows.dropped},
        "metrics": {"validation": metrics},
        "split": split,
    })
    path = None
    if out is not None:
        path = save_checkpoint(out, model, config, history=result.history, overwrite=overwrite or resume)
        journal.remove()
    return RunSummary(model, prep, path, len(train_idx), len(val_idx), metrics, result, rows.dropped, unknown=unknown,
                      lr=lr, batch_size=batch_size)


class ResumeJournal:
    """The last finished epoch of a run writing ``out``, kept beside it as
    ``.<name>.resume.pt`` until the checkpoint is saved, so ``--resume`` can continue an
    interrupted run exactly. It holds tensors and plain values only and is read with
    ``torch.load(weights_only=True)``; a journal of other settings or data is refused.
    """

    def __init__(self, out: Path, key: dict[str, Any]) -> None:
        self.path = out.parent / f".{out.name}.resume.pt"
        self.key = key

    def write(self, state: TrainState) -> None:
        buf = io.BytesIO()
        torch.save({"key": self.key, "state": dataclasses.asdict(state)}, buf)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_file_atomically(self.path, buf.getvalue())
        except OSError:
            pass  # a journal is a convenience: never fail the run for it

    def read(self) -> TrainState:
        if not self.path.is_file():
            raise CheckpointError(f"nothing to resume: no interrupted run was recorded at {self.path}")
        try:
            saved = torch.load(self.path, map_location="cpu", weights_only=True)
            state = TrainState(**saved["state"])
        except Exception as exc:  # noqa: BLE001 - any damage means: cannot resume
            raise CheckpointError(f"cannot resume from {self.path}: {exc}; run without --resume") from None
        if saved.get("key") != self.key:
            raise CheckpointError(
                f"{self.path} records a run with other settings or data; resume with the same command "
                "and data, or run without --resume"
            )
        state.best = tuple(state.best)
        return state

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def _check_out(out: str | os.PathLike[str] | None, overwrite: bool) -> None:
    """Refuse an existing --out before any training, not after."""
    if out is not None and Path(out).exists() and not overwrite:
        raise CheckpointError(f"'{out}' already exists; choose another --out or pass --overwrite")


def pretrain(
    data: str | Path | pd.DataFrame,
    *,
    target: str,
    out: str | os.PathLike[str] | None,
    rows: Sequence[str] = (),
    hidden: Sequence[int] = (64, 64),
    epochs: int = 200,
    lr: float = 1e-3,
    batch_size: int | None = None,
    seed: int = 0,
    init: str | None = None,
    val_fraction: float = 0.2,
    patience: int = 20,
    ignore: Sequence[str] = (),
    categorical: Sequence[str] = (),
    min_count: int = 2,
    strict: bool = False,
    overwrite: bool = False,
    on_epoch: OnEpoch | None = None,
    device: str = "cpu",
    resume: bool = False,
) -> RunSummary:
    """Train a TabularMLP on the source rows, early-stopped on a grouped validation split.

    ``batch_size`` None: chosen for the number of rows (``train.batch_size_for``)."""
    _check_out(out, overwrite or resume)
    resolve_device(device)  # an unavailable device fails before any work
    if init is not None:
        check_scheme(init)
    selected = select_rows(data, rows, target, strict=strict)
    prep = fit_preprocessing(selected.frame, target, selected.y, ignore=ignore, categorical=categorical,
                             min_count=min_count)
    batch_size = batch_size or batch_size_for(round(len(selected.y) * (1 - val_fraction)))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = TabularMLP({c: len(v) for c, v in prep.categorical.items()}, len(prep.numeric), hidden)
        if init is not None and init != "lsuv":
            init_(model, {"body.*": init, "head": init})
    if init == "lsuv":
        cat, num, _ = prep.encode(selected.frame.iloc[:512])
        init_(model, {"body.*": "lsuv", "head": "lsuv"}, batch=(cat, num),
              generator=torch.Generator().manual_seed(seed))
    config = {"training": {"command": "pretrain", "data": str(data) if not isinstance(data, pd.DataFrame) else "DataFrame",
                           "rows": list(rows), "init": init or "default"},
              "lineage": {"parent": None, "strategy": None}}
    return _train_and_save(model, prep, selected, strategy="full", lr=lr, epochs=epochs, batch_size=batch_size,
                           seed=seed, val_fraction=val_fraction, patience=patience, out=out, overwrite=overwrite,
                           config=config, on_epoch=on_epoch, from_own_init=True, device=device, resume=resume)


def load_model(checkpoint: str | os.PathLike[str]) -> tuple[TabularMLP, Preprocessing, dict[str, Any]]:
    """Rebuild the model and preprocessing of a checkpoint directory (weights verified)."""
    ckpt = load_checkpoint(checkpoint)
    if not ckpt.config.get("preprocessing"):
        raise CheckpointError(f"'{checkpoint}' is not a tabular checkpoint (it has no preprocessing)")
    prep = Preprocessing.from_json(ckpt.config["preprocessing"])
    model = TabularMLP.from_config(ckpt.config["model"])
    load_pretrained(model, ckpt.state_dict)
    ckpt.config["weights"]["sha256"] = ckpt.sha256
    return model, prep, ckpt.config


def finetune(
    data: str | Path | pd.DataFrame,
    *,
    source: str | os.PathLike[str],
    out: str | os.PathLike[str] | None,
    rows: Sequence[str] = (),
    strategy: str = "freeze:1",
    lr: float = 1e-4,
    epochs: int = 200,
    batch_size: int = 32,
    seed: int = 0,
    val_fraction: float = 0.2,
    patience: int = 20,
    new_categories: str = "mean",
    recenter: bool = True,
    target: str | None = None,
    hidden: Sequence[int] = (64, 64),
    strict: bool = False,
    overwrite: bool = False,
    on_epoch: OnEpoch | None = None,
    on_auto_fit: Callable[[int, int, str], None] | None = None,
    device: str = "cpu",
    resume: bool = False,
) -> RunSummary:
    """Start from ``source``'s weights and train on the target rows with a strategy.

    ``source`` is a checkpoint directory (its preprocessing is reused and its vocabulary
    extended with the target's new categories), or a foreign ``.safetensors``/``.pt``
    state dict: then preprocessing is fitted on the target rows, the architecture comes
    from ``hidden``, and whatever fits is loaded (see the returned ``load_report``).
    ``recenter`` first shifts the output to the target rows' level (``recenter.py``).
    """
    _check_out(out, overwrite or resume)
    resolve_device(device)
    if strategy != "auto":
        parse_strategy(strategy)
    source_path = Path(source)
    if source_path.is_dir():
        model, prep, parent = load_model(source_path)
        target = target or prep.target
        if target != prep.target:
            raise ConfigError(f"the source model predicts '{prep.target}', not '{target}'")
        selected = select_rows(data, rows, target, strict=strict)
        auto = None
        if strategy == "auto":
            auto = choose_strategy(model, prep, selected.frame, selected.y, seed=seed, epochs=epochs,
                                   patience=patience, batch_size=batch_size, on_fit=on_auto_fit)
            strategy, lr = auto.strategy, auto.lr if auto.lr is not None else lr
        model, prep, alignment = transfer_model(model, prep, selected.frame, new_categories)
        report = None
        parent_sha = parent["weights"]["sha256"]
    else:
        _, _, parent_sha = read_state(source_path)  # says what it looked for; refuses unsafe files
        if target is None:
            raise ConfigError("a foreign weights file carries no target: pass --target COL")
        if strategy == "auto":
            raise ConfigError("--strategy auto needs a warmstart checkpoint directory as --from")
        auto = None
        selected = select_rows(data, rows, target, strict=strict)
        prep = fit_preprocessing(selected.frame, target, selected.y)
        alignment = None
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = TabularMLP({c: len(v) for c, v in prep.categorical.items()}, len(prep.numeric), hidden)
        report = load_pretrained(model, source_path, strict=False, on_mismatch="skip")
    config = {
        "training": {"command": "finetune", "data": str(data) if not isinstance(data, pd.DataFrame) else "DataFrame",
                     "rows": list(rows), "new_categories": new_categories, "recenter": recenter},
        "lineage": {"parent": parent_sha, "parent_path": str(source),
                    "strategy": f"auto:{auto.label}" if auto else parse_strategy(strategy).name},
    }
    if auto is not None:
        config["training"]["auto"] = {"chose": auto.label, "why": auto.reason(), "cv_mae": auto.scores}
    summary = _train_and_save(model, prep, selected, strategy=strategy, lr=lr, epochs=epochs, batch_size=batch_size,
                              seed=seed, val_fraction=val_fraction, patience=patience, out=out, overwrite=overwrite,
                              config=config, on_epoch=on_epoch, recenter=recenter, device=device, resume=resume)
    summary.alignment, summary.load_report, summary.auto = alignment, report, auto
    return summary


def evaluate(checkpoint: str | os.PathLike[str], data: str | Path | pd.DataFrame, rows: Sequence[str] = ()) -> dict[str, Any]:
    """MAE, RMSE and R^2 (original units) of a checkpoint on the selected rows."""
    model, prep, config = load_model(checkpoint)
    selected = select_rows(data, rows, prep.target)
    pred, unknown = predict_frame(model, prep, selected.frame)
    metrics = regression_metrics(selected.y, pred)
    metrics["dropped"] = sum(selected.dropped.values())
    metrics["unknown"] = unknown
    seen = set((config.get("split") or {}).get("seen_rows", []))
    metrics["seen"] = int(np.isin(row_fingerprints(selected.frame, prep.columns), list(seen)).sum()) if seen else 0
    return metrics


def predict(
    checkpoint: str | os.PathLike[str], data: str | Path | pd.DataFrame, out: str | os.PathLike[str] | None,
    *, overwrite: bool = False,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The input rows in order plus ``predicted_<target>``; written atomically to ``out``."""
    if out is not None and Path(out).exists() and not overwrite:
        raise DataError(f"'{out}' already exists; choose another --out or pass --overwrite")
    model, prep, _ = load_model(checkpoint)
    frame = data if isinstance(data, pd.DataFrame) else read_table(data)
    pred, unknown = predict_frame(model, prep, frame)
    result = frame.copy()
    result[f"predicted_{prep.target}"] = np.round(pred, 2)
    if out is not None:
        try:
            write_file_atomically(out, result.to_csv(index=False).encode())
        except OSError as exc:
            raise DataError(f"cannot write predictions to '{out}': {exc.strerror or exc}") from None
    return result, unknown
