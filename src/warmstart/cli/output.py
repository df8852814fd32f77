"""What every command shares: the console, a progress bar over epochs, common options."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

# Not a terminal (a pipe, a log): wide enough that tables are not folded.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)


@contextlib.contextmanager
def epoch_progress(label: str, epochs: int) -> Iterator[Callable[[dict[str, Any]], None]]:
    """Yield an ``on_epoch`` callback that drives a progress bar (shown after ~2 s of work).

    Early stopping ends a run before its epoch budget; the bar then simply completes.
    """
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("epoch {task.completed:.0f}/{task.total:.0f}"),
        TextColumn("{task.fields[loss]}"), TimeElapsedColumn(), console=console, transient=True,
    )
    task = progress.add_task(label, total=epochs, loss="")
    started = time.perf_counter()
    shown = False

    def on_epoch(row: dict[str, Any]) -> None:
        nonlocal shown
        loss = f"val loss {row['val_loss']:.4f}" if "val_loss" in row else f"loss {row['train_loss']:.4f}"
        progress.update(task, completed=min(row["epoch"], epochs), loss=loss)
        if not shown and time.perf_counter() - started > 2.0:
            progress.start()
            shown = True

    try:
        yield on_epoch
    finally:
        if shown:
            progress.update(task, completed=epochs)
            progress.stop()


def metrics_table(title: str, rows: dict[str, dict[str, float]]) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("", "MAE", "RMSE", "R^2", "rows"):
        table.add_column(col, justify="right" if col else "left")
    for name, m in rows.items():
        table.add_row(name, f"{m['mae']:,.0f}", f"{m['rmse']:,.0f}", f"{m['r2']:.3f}", f"{m['rows']:,}")
    return table


def rows_option(f: Callable) -> Callable:
    return click.option(
        "--rows", "rows", multiple=True, metavar="FILTER",
        help="Row filter: COL=V1,V2 | COL!=V | COL=@europe (also @eu, @eea, @us). Repeat to AND.",
    )(f)


def parse_sizes(text: str, option: str = "--hidden") -> tuple[int, ...]:
    try:
        sizes = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"'{text}' is not a comma-separated list of integers", param_hint=option) from None
    if not sizes or any(s < 1 for s in sizes):
        raise click.BadParameter(f"'{text}' needs positive integers, e.g. 64,64", param_hint=option)
    return sizes


def parse_batch_size(ctx: click.Context, param: click.Parameter, value: str) -> int | None:
    """``--batch-size``: a positive integer, or 'auto' (None: chosen for the data size)."""
    if value is None or str(value).strip().lower() == "auto":
        return None
    try:
        size = int(value)
    except ValueError:
        size = 0
    if size < 1:
        raise click.BadParameter(f"'{value}' is neither a positive integer nor 'auto'", ctx=ctx, param=param)
    return size


def describe_dropped(dropped: dict[str, int], column: str) -> str | None:
    if not dropped:
        return None
    parts = ", ".join(f"{n} {why}" for why, n in dropped.items())
    return f"dropped rows with an unusable {column}: {parts} (--strict refuses instead)"


@contextlib.contextmanager
def count_progress(label: str) -> Iterator[Callable[[int, int, str], None]]:
    """Yield an ``on_fit(done, total, label)`` callback driving a bar with an ETA.

    The bar appears with the first call and goes away when ``done`` reaches ``total``,
    so another bar (rich shows one at a time) can follow inside the same ``with``.
    """
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=True)
    task = progress.add_task(label, total=None)
    state = {"live": False}

    def on_fit(done: int, total: int, what: str) -> None:
        if not state["live"] and done < total:
            progress.start()
            state["live"] = True
        progress.update(task, completed=done, total=total, description=f"{label}: {what}"[:60].ljust(60))
        if state["live"] and done >= total:
            progress.stop()
            state["live"] = False

    try:
        yield on_fit
    finally:
        if state["live"]:
            progress.stop()
