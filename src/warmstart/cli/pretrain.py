"""``warmstart pretrain``: train the source model and save it as a checkpoint."""

from __future__ import annotations

from pathlib import Path

import click

from ..init import scheme_names
from ..tabular.workflow import pretrain
from .output import (console, describe_dropped, epoch_progress, metrics_table, parse_batch_size, parse_sizes,
                     rows_option)


@click.command("pretrain")
@click.argument("data")
@click.option("--target", required=True, help="Column to predict (modelled as log, standardized).")
@rows_option
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Checkpoint directory to write.")
@click.option("--hidden", default="64,64", show_default=True, help="Body layer sizes.")
@click.option("--epochs", default=200, show_default=True, type=click.IntRange(1), help="Epoch budget (early stopping ends sooner).")
@click.option("--lr", default=1e-3, show_default=True, type=click.FloatRange(0, min_open=True), help="Adam learning rate.")
@click.option("--batch-size", default="auto", show_default=True, callback=parse_batch_size,
              help="Rows per step, or auto: 64 up to 64,000 training rows, then about 1,000 steps per epoch (at most 1,024).")
@click.option("--patience", default=20, show_default=True, type=click.IntRange(1), help="Epochs without improvement before stopping.")
@click.option("--val-fraction", default=0.2, show_default=True, type=click.FloatRange(0, 1, min_open=True, max_open=True))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--init", "init", type=click.Choice(scheme_names()), default=None, help="Re-initialize body and head with this scheme (default: PyTorch's own).")
@click.option("--ignore", multiple=True, metavar="COL", help="Column not to use as a feature. Repeatable.")
@click.option("--categorical", multiple=True, metavar="COL", help="Treat a numeric-looking column as categorical.")
@click.option("--strict", is_flag=True, help="Refuse rows with a zero, negative or non-numeric target instead of dropping them.")
@click.option("--resume", is_flag=True,
              help="Continue an interrupted run of this same command from its last finished epoch.")
@click.option("--device", default="cpu", show_default=True,
              help="cpu, cuda, cuda:N or auto. Small tabular models train fastest on the CPU.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out checkpoint (atomically).")
def command(data, target, rows, out, hidden, epochs, lr, batch_size, patience, val_fraction, seed, init, ignore,
            categorical, strict, resume, device, overwrite) -> None:
    """Train a model on the source rows of DATA and save it to --out.

    DATA is a CSV (or Parquet) file, or 'salaries' for the bundled survey.

    \b
    warmstart pretrain salaries --target salary_in_usd --rows company_location=US --out runs/us
    warmstart pretrain my.csv --target price --hidden 128,64 --init kaiming_uniform --out runs/src
    """
    with epoch_progress("pretraining", epochs) as on_epoch:
        summary = pretrain(data, target=target, rows=rows, out=out, hidden=parse_sizes(hidden), epochs=epochs, lr=lr,
                           batch_size=batch_size, seed=seed, init=init, val_fraction=val_fraction, patience=patience,
                           ignore=ignore, categorical=categorical, strict=strict, overwrite=overwrite, device=device, resume=resume,
                           on_epoch=on_epoch)
    note = describe_dropped(summary.dropped, target)
    if note:
        console.print(note)
    fr = summary.fit
    console.print(f"trained on {summary.rows_train:,} rows in batches of {summary.batch_size}, validated on "
                  f"{summary.rows_val:,} (grouped split, seed {seed}); "
                  f"best epoch {fr.best_epoch} of {fr.epochs_run}" + (" (early stop)" if fr.stopped_early else ""))
    console.print(metrics_table(f"validation, {target}", {"pretrained": summary.metrics}))
    console.print(f"saved checkpoint to {summary.path}")
