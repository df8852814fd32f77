"""``warmstart evaluate``: a checkpoint's errors on some rows, in the target's own units."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..tabular.workflow import evaluate
from .output import console, metrics_table, rows_option


@click.command("evaluate")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("data")
@rows_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: mae, rmse, r2, rows.")
def command(checkpoint, data, rows, as_json) -> None:
    """MAE, RMSE and R^2 of CHECKPOINT on the rows of DATA.

    \b
    warmstart evaluate runs/eu salaries --rows company_location=@europe
    warmstart evaluate runs/eu holdout.csv --json
    """
    m = evaluate(checkpoint, data, rows)
    if as_json:
        click.echo(json.dumps({k: m[k] for k in ("mae", "rmse", "r2", "rows")}))
        return
    console.print(metrics_table(f"{checkpoint} on {data}", {"model": m}))
    if m["seen"]:
        console.print(f"[bold]note:[/bold] {m['seen']:,} of these {m['rows']:,} rows (or identical ones) were used to "
                      "train or early-stop this model, so these errors are optimistic; score held-out rows, "
                      "or run `warmstart study` for an honest comparison")
    if m["dropped"]:
        console.print(f"{m['dropped']} rows without a usable target were left out")
    for col, n in m["unknown"].items():
        console.print(f"{n} rows have a {col} the model never saw (scored with its <unknown> row)")
