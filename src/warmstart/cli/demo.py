"""``warmstart demo``: the flagship job on the bundled survey, US -> Europe, honestly scored."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click
import numpy as np

from ..metrics import regression_metrics
from ..tabular.data import read_table
from ..tabular.encoding import feature_columns
from ..tabular.filters import apply_filters
from ..tabular.split import group_ids, grouped_split
from ..tabular.workflow import evaluate, finetune, pretrain
from .output import console, epoch_progress, metrics_table

TARGET = "salary_in_usd"


@click.command("demo")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to write the checkpoints (default: a new temporary directory).")
@click.option("--seed", default=0, show_default=True, type=int)
def command(out: Path | None, seed: int) -> None:
    """Pretrain on the survey's US rows, fine-tune on Europe several ways, and compare
    them with the Europe median on held-out Europe rows."""
    out = out or Path(tempfile.mkdtemp(prefix="warmstart-demo-"))
    df = read_table("salaries")
    europe = apply_filters(df, ["company_location=@europe"])
    test_idx, pool_idx = grouped_split(group_ids(europe, feature_columns(europe, TARGET)), [0.3], seed)
    pool, test = europe.iloc[pool_idx].reset_index(drop=True), europe.iloc[test_idx].reset_index(drop=True)
    console.print(f"bundled survey: {len(df):,} rows; source US, target Europe: {len(pool)} rows to train on, "
                  f"{len(test)} held out for the score (grouped: identical rows never on both sides)")
    console.print("nn.Linear(64, ...) starts from U(-1/sqrt(64), 1/sqrt(64)) = +-0.125 "
                  "(see `warmstart init-report --layers 64,64,1`)")
    with epoch_progress("pretraining on US rows", 200) as on_epoch:
        us = pretrain(df, target=TARGET, rows=["company_location=US"], out=out / "us", seed=seed,
                      overwrite=True, on_epoch=on_epoch)
    console.print(f"1. pretrained on {us.rows_train:,} US rows (best epoch {us.fit.best_epoch}) -> {us.path}")
    results = {}
    runs = (
        # The textbook recipe: smaller lr, fixed epochs, no re-centring, no early stopping.
        ("naive: full, lr 1e-4, 50 epochs", "full", 1e-4, dict(recenter=False, epochs=50, patience=50)),
        ("freeze:1, lr 1e-3, early-stopped", "freeze:1", 1e-3, {}),
        ("probe, lr 1e-3, early-stopped", "probe", 1e-3, {}),
        ("scratch, lr 1e-3, early-stopped", "scratch", 1e-3, {}),
    )
    for label, strategy, lr, extra in runs:
        name = "naive" if label.startswith("naive") else strategy.replace(":", "-")
        with epoch_progress(f"fine-tuning {label}", extra.get("epochs", 200)) as on_epoch:
            run = finetune(pool, source=out / "us", strategy=strategy, lr=lr, out=out / name, seed=seed,
                           overwrite=True, on_epoch=on_epoch, **extra)
        results[label] = evaluate(run.path, test)
        console.print(f"2. {label}: {run.fit.epochs_run} epochs -> {run.path}")
        if strategy == "freeze:1":
            console.print("   new categories got fresh embedding rows: "
                          + ", ".join(f"{c} {n} rows" for c, n in run.alignment.new_rows.items() if n))
    median = float(np.median(pool[TARGET].astype(float)))
    results["Europe median"] = regression_metrics(test[TARGET].astype(float).to_numpy(), np.full(len(test), median))
    results["US model as is"] = evaluate(out / "us", test)
    console.print(metrics_table(f"held-out Europe rows, {TARGET} (USD)", results))
    best = min(results, key=lambda k: results[k]["mae"])
    console.print(f"lowest MAE: {best}. For many sizes, seeds and baselines: `warmstart study`.")
