"""Write a study's files: results.csv, summary.csv, plots, report.html, settings.json."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from ..weights import versions, write_directory_atomically
from .html import write_report
from .plots import plot_error_vs_size, plot_gain_vs_scratch
from .summary import summarize, verdict

FILES = ("results.csv", "summary.csv", "mae_vs_size.png", "gain_vs_scratch.png", "report.html", "settings.json")


def write_study(
    out: Path,
    results: pd.DataFrame,
    *,
    settings: dict[str, Any],
    alignment: str,
    notes: list[str],
    seconds: float,
    rows_label: str,
    target: str,
    overwrite: bool = False,
) -> tuple[Path, pd.DataFrame, list[str]]:
    """Write every file into ``out`` in one atomic step; return (path, summary, verdict)."""
    summary = summarize(results)
    findings = verdict(summary, rows_label)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        plots = [plot_error_vs_size(summary, tmp_path / "mae_vs_size.png", target),
                 plot_gain_vs_scratch(summary, tmp_path / "gain_vs_scratch.png")]
        write_report(tmp_path / "report.html", title=f"Did transfer help? {target}, {rows_label} rows",
                     verdict=findings, summary=summary, plots=plots, results=results, alignment=alignment,
                     notes=notes, settings=settings, versions=versions(), seconds=seconds)
        files = {
            "results.csv": results.to_csv(index=False, float_format="%.6g").encode(),
            "summary.csv": summary.to_csv(index=False, float_format="%.6g").encode(),
            "settings.json": json.dumps(settings, indent=2).encode(),
        }
        for name in ("mae_vs_size.png", "gain_vs_scratch.png", "report.html"):
            files[name] = (tmp_path / name).read_bytes()
    path = write_directory_atomically(out, files, overwrite=overwrite)
    return path, summary, findings
