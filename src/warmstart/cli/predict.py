"""``warmstart predict``: predictions for every row of a file."""

from __future__ import annotations

from pathlib import Path

import click

from ..tabular.workflow import predict
from .output import console


@click.command("predict")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("data")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="CSV to write.")
@click.option("--overwrite", is_flag=True)
def command(checkpoint, data, out, overwrite) -> None:
    """Write DATA's rows, in order, plus a predicted_<target> column to --out.

    \b
    warmstart predict runs/eu new_rows.csv --out predictions.csv
    """
    frame, unknown = predict(checkpoint, data, out, overwrite=overwrite)
    console.print(f"wrote {len(frame):,} predictions to {out}")
    for col, n in unknown.items():
        console.print(f"{n} rows have a {col} the model never saw (predicted with its <unknown> row)")
