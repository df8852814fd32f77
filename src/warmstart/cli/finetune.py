"""``warmstart finetune``: start from a source model and train on the target rows."""

from __future__ import annotations

from pathlib import Path

import click

from ..tabular.workflow import finetune
from .output import console, count_progress, describe_dropped, epoch_progress, metrics_table, parse_sizes, rows_option


@click.command("finetune")
@click.argument("data")
@click.option("--from", "source", required=True, type=click.Path(path_type=Path),
              help="Source checkpoint directory, or a foreign .safetensors/.pt state dict.")
@rows_option
@click.option("--strategy", default="freeze:1", show_default=True,
              help="scratch | full | freeze:K | probe | lp-ft | l2sp[:ALPHA] | discriminative[:FACTOR] | auto "
                   "(chosen by grouped cross-validation on the target rows)")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Checkpoint directory to write.")
@click.option("--lr", default=1e-4, show_default=True, type=click.FloatRange(0, min_open=True),
              help="Learning rate (smaller than pretraining's: the start is already good).")
@click.option("--epochs", default=200, show_default=True, type=click.IntRange(1))
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1))
@click.option("--patience", default=20, show_default=True, type=click.IntRange(1))
@click.option("--val-fraction", default=0.2, show_default=True, type=click.FloatRange(0, 1, min_open=True, max_open=True))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--new-categories", type=click.Choice(["mean", "unknown"]), default="mean", show_default=True,
              help="How embedding rows for categories the source never saw start.")
@click.option("--recenter/--no-recenter", default=True, show_default=True,
              help="First shift the output to the target rows' mean (closes the level gap in one step).")
@click.option("--target", default=None, help="Target column (needed only with a foreign weights file).")
@click.option("--hidden", default="64,64", show_default=True, help="Body sizes (only with a foreign weights file).")
@click.option("--strict", is_flag=True, help="Refuse unusable target values instead of dropping them.")
@click.option("--resume", is_flag=True,
              help="Continue an interrupted run of this same command from its last finished epoch.")
@click.option("--device", default="cpu", show_default=True,
              help="cpu, cuda, cuda:N or auto. Small tabular models train fastest on the CPU.")
@click.option("--overwrite", is_flag=True)
def command(data, source, rows, strategy, out, lr, epochs, batch_size, patience, val_fraction, seed, new_categories,
            recenter, target, hidden, strict, resume, device, overwrite) -> None:
    """Fine-tune the model in --from on the rows of DATA and save it to --out.

    Categories the source never saw (every Europe country for a US model) get new
    embedding rows that train even under a frozen strategy.

    \b
    warmstart finetune salaries --from runs/us --rows company_location=@europe \\
        --strategy freeze:1 --lr 1e-4 --out runs/eu
    warmstart finetune eu.csv --from weights.safetensors --target salary_in_usd --out runs/eu
    """
    with count_progress("auto: cross-validating") as on_auto_fit, \
            epoch_progress(f"fine-tuning ({strategy})", epochs) as on_epoch:
        summary = finetune(data, source=source, rows=rows, strategy=strategy, out=out, lr=lr, epochs=epochs,
                           batch_size=batch_size, seed=seed, val_fraction=val_fraction, patience=patience,
                           new_categories=new_categories, recenter=recenter, target=target, hidden=parse_sizes(hidden),
                           strict=strict, overwrite=overwrite, device=device, resume=resume, on_epoch=on_epoch,
                           on_auto_fit=on_auto_fit)
    if summary.load_report is not None:
        console.print(str(summary.load_report))
    if summary.alignment is not None:
        console.print("categories of the target vs the source (new ones get fresh embedding rows):")
        console.print(str(summary.alignment), soft_wrap=True, markup=False)
    note = describe_dropped(summary.dropped, target or "target")
    if note:
        console.print(note)
    if summary.auto is not None:
        console.print(f"auto chose {summary.auto.label}: {summary.auto.reason()}")
    fr = summary.fit
    if fr.epochs_run:
        console.print(f"strategy {fr.strategy}, lr {summary.lr:g}: trained on {summary.rows_train:,} rows, validated "
                      f"on {summary.rows_val:,}; best epoch {fr.best_epoch} of {fr.epochs_run}"
                      + (" (early stop)" if fr.stopped_early else ""))
    else:
        console.print(f"strategy {fr.strategy}: output re-centred on {summary.rows_train:,} rows, no gradient step; "
                      f"validated on {summary.rows_val:,}")
    console.print(metrics_table("validation", {fr.strategy: summary.metrics}))
    console.print(f"saved checkpoint to {summary.path}")
