"""``warmstart study``: did transfer help, which strategy, from how many target rows on."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from ..errors import CheckpointError
from ..report.study_report import write_study
from ..report.summary import size_label
from ..study import DEFAULT_BASELINES, DEFAULT_STRATEGIES, run_study, settings_dict
from .output import console, count_progress


def rows_label(filters: tuple[str, ...]) -> str:
    """A reader's name for the target rows: 'Europe' for company_location=@europe."""
    if len(filters) == 1 and "=@" in filters[0] and "," not in filters[0]:
        return filters[0].split("=@", 1)[1].upper() if filters[0].endswith(("@us", "@eu", "@eea")) \
            else filters[0].split("=@", 1)[1].capitalize()
    return ", ".join(filters)


@click.command("study")
@click.argument("data")
@click.option("--target", required=True, help="Column to predict.")
@click.option("--source", "source", multiple=True, required=True, metavar="FILTER",
              help="Row filter for the source rows (e.g. company_location=US). Repeat to AND.")
@click.option("--target-rows", "target_rows", multiple=True, required=True, metavar="FILTER",
              help="Row filter for the target rows (e.g. company_location=@europe). Repeat to AND.")
@click.option("--sizes", default="25,50,100,200,all", show_default=True, help="Target training sizes.")
@click.option("--seeds", default=10, show_default=True, type=click.IntRange(1))
@click.option("--strategies", default=",".join(DEFAULT_STRATEGIES), show_default=True,
              help="Comma-separated; NAME@LR sets a learning rate (e.g. full@1e-4).")
@click.option("--baselines", default=",".join(DEFAULT_BASELINES), show_default=True)
@click.option("--test-fraction", default=0.3, show_default=True, type=click.FloatRange(0.05, 0.9))
@click.option("--epochs", default=200, show_default=True, type=click.IntRange(1), help="Epoch budget per fit.")
@click.option("--patience", default=20, show_default=True, type=click.IntRange(1))
@click.option("--workers", default=None, type=click.IntRange(1), help="Processes running seeds side by side "
              "(default: one per core). Results do not depend on it.")
@click.option("--no-cohort", is_flag=True, help="Train every model separately instead of as cohorts "
              "(slower; results agree to float tolerance).")
@click.option("--keep-duplicates", is_flag=True, help="Keep exact duplicate rows (removed by default).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Directory for the results and report.")
@click.option("--overwrite", is_flag=True)
def command(data, target, source, target_rows, sizes, seeds, strategies, baselines, test_fraction, epochs, patience,
            workers, no_cohort, keep_duplicates, out, overwrite) -> None:
    """Compare fine-tuning strategies with baselines over target sizes and seeds.

    Every method trains on the same target subset and is scored on the same held-out
    target rows; early stopping uses rows carved from the training subset, never the
    test rows. Writes results.csv, summary.csv, two plots and report.html to --out.

    \b
    warmstart study salaries --target salary_in_usd --source company_location=US \\
        --target-rows company_location=@europe --sizes 25,50,100,200,all --seeds 10 --out runs/study
    """
    if out.exists() and not overwrite:
        raise CheckpointError(f"'{out}' already exists; choose another --out or pass --overwrite")
    with count_progress("study") as on_fit:
        result = run_study(data, target=target, source=source, target_rows=target_rows, sizes=sizes, seeds=seeds,
                           strategies=[s for s in strategies.split(",") if s.strip()],
                           baselines=[b for b in baselines.split(",") if b.strip()], test_fraction=test_fraction,
                           epochs=epochs, patience=patience, dedupe=not keep_duplicates, workers=workers, cohort=not no_cohort,
                           on_fit=on_fit)
    label = rows_label(target_rows)
    path, summary, findings = write_study(out, result.results, settings=settings_dict(result.settings),
                                          alignment=result.alignment, notes=result.notes, seconds=result.seconds,
                                          rows_label=label, target=target, overwrite=overwrite)
    for note in result.notes:
        console.print(note)
    table = Table(title=f"MAE of {target} on held-out target rows (mean over {seeds} seeds)", title_justify="left")
    subsets = summary.drop_duplicates("subset").sort_values("size")
    table.add_column("method")
    table.add_column("kind")
    for _, r in subsets.iterrows():
        table.add_column(size_label(r), justify="right")
    for method in summary.sort_values(["kind", "method"], ascending=[False, True])["method"].unique():
        cells = []
        for s in subsets["subset"]:
            row = summary[(summary["subset"] == s) & (summary["method"] == method)]
            cells.append("" if row.empty else f"{row['mae_mean'].iloc[0]:,.0f}" + ("*" if row["negative_transfer"].iloc[0] else ""))
        table.add_row(method, summary[summary["method"] == method]["kind"].iloc[0], *cells)
    console.print(table)
    console.print("* negative transfer: significantly worse than scratch")
    for line in findings:
        console.print("- " + line)
    console.print(f"{result.seconds:,.0f} s; wrote {', '.join(sorted(p.name for p in path.iterdir()))} to {path}")
