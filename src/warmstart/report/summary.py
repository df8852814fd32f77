"""Summaries over seeds: means with 95% intervals, paired gains, negative-transfer flags.

Interval of a mean over n seeds: mean +- t_{0.975, n-1} * s / sqrt(n), with s the sample
standard deviation (Student's t; n = 1 gives no interval). Gains are paired by seed:
gain_i = 100 * (MAE_ref,i - MAE_method,i) / MAE_ref,i, so the test-split noise shared by
both methods cancels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of the mean's confidence interval; low/high are NaN for n < 2."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if x.size < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return mean, mean - half, mean + half


def _paired_gain(results: pd.DataFrame, subset: str, method: str, reference: str) -> tuple[float, float, float]:
    at = results[results["subset"] == subset].pivot_table(index="seed", columns="method", values="mae")
    if reference not in at or method not in at:
        return math.nan, math.nan, math.nan
    pair = at[[reference, method]].dropna()
    return t_interval(100.0 * (pair[reference] - pair[method]) / pair[reference])


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Per training subset and method: metric means and intervals, gains over scratch and
    over the best baseline (lowest mean MAE among baselines there), negative transfer.

    ``subset`` is the requested size ("25", "all"); ``size`` the mean number of rows it
    held ("all" holds a slightly different count per seed).
    """
    rows = []
    results = results.assign(subset=results["subset"].astype(str))
    for subset, at in results.groupby("subset", sort=False):
        size = int(round(at["size"].mean()))
        means = at.groupby("method")["mae"].mean()
        base = at[at["kind"] == "baseline"]
        best_baseline = base.groupby("method")["mae"].mean().idxmin() if len(base) else None
        for method, part in at.groupby("method", sort=False):
            row: dict[str, object] = {"subset": subset, "size": size, "method": method, "kind": part["kind"].iloc[0],
                                      "seeds": int(part["seed"].nunique())}
            for metric in ("mae", "rmse", "r2"):
                row[f"{metric}_mean"], row[f"{metric}_lo"], row[f"{metric}_hi"] = t_interval(part[metric])
            row["gain_vs_scratch_pct"], row["gain_vs_scratch_lo"], row["gain_vs_scratch_hi"] = (
                _paired_gain(results, subset, method, "scratch") if method != "scratch" else (math.nan,) * 3)
            row["best_baseline"] = best_baseline
            row["gain_vs_best_baseline_pct"], row["gain_vs_best_baseline_lo"], row["gain_vs_best_baseline_hi"] = (
                _paired_gain(results, subset, method, best_baseline)
                if best_baseline and method != best_baseline else (math.nan,) * 3)
            # Significantly worse than training from scratch: the whole interval of the
            # paired gain lies below zero.
            row["negative_transfer"] = bool(part["kind"].iloc[0] == "strategy" and method != "scratch"
                                            and row["gain_vs_scratch_hi"] < 0)
            row["beats_median"] = bool(method != "median" and _paired_gain(results, subset, method, "median")[1] > 0)
            row["seconds_mean"] = float(part["seconds"].mean())
            row["rank"] = int((means < means[method]).sum()) + 1
            rows.append(row)
    return pd.DataFrame(rows).sort_values(["size", "rank"]).reset_index(drop=True)


def _pct(row: pd.Series, key: str) -> str:
    lo, hi = row[f"{key}_lo"], row[f"{key}_hi"]
    ci = f" ({lo:+.1f}..{hi:+.1f})" if math.isfinite(lo) else ""
    return f"{row[f'{key}_pct']:+.1f}%{ci}"


def verdict(summary: pd.DataFrame, rows_label: str = "target") -> list[str]:
    """Plain-language findings: one sentence per target size, then the overall answers."""
    lines = []
    helps_at: list[str] = []
    for size, at in summary.groupby("size", sort=True):
        label = size_label(at.iloc[0])
        strategies = at[at["kind"] == "strategy"]
        if strategies.empty:
            continue
        best = strategies.sort_values("mae_mean").iloc[0]
        baseline = best["best_baseline"]
        gain = best["gain_vs_best_baseline_pct"]
        text = (f"With {label} {rows_label} rows, the best strategy is {best['method']} "
                f"(MAE {best['mae_mean']:,.0f}); ")
        if not isinstance(baseline, str) or not math.isfinite(gain):
            text += "no baseline to compare with."
        elif best["gain_vs_best_baseline_lo"] > 0:
            text += f"it beats the best baseline, {baseline}, by {_pct(best, 'gain_vs_best_baseline')}."
        elif best["gain_vs_best_baseline_hi"] < 0:
            text += f"the best baseline, {baseline}, is better: {_pct(best, 'gain_vs_best_baseline')}."
        else:
            text += (f"it is not clearly different from the best baseline, {baseline}: "
                     f"{_pct(best, 'gain_vs_best_baseline')}.")
        if best["method"] != "scratch" and math.isfinite(best["gain_vs_scratch_pct"]):
            text += f" Against training from scratch: {_pct(best, 'gain_vs_scratch')}."
            if best["gain_vs_scratch_lo"] > 0:
                helps_at.append(label)
        lines.append(text)
    if helps_at:
        lines.append(f"The best transfer strategy beats training from scratch (95% interval above zero) with "
                     f"{', '.join(helps_at)} rows.")
    else:
        lines.append("At no size does transfer beat training from scratch with a 95% interval above zero.")
    beaten = summary[summary["beats_median"]]["size"]
    sizes = sorted(summary["size"].unique())
    if beaten.empty:
        lines.append("Nothing beats predicting the median with a 95% interval above zero, at any size.")
    elif beaten.min() > sizes[0]:
        lines.append(f"Below {beaten.min()} rows nothing beats predicting the median significantly.")
    negative = summary[summary["negative_transfer"]]
    if not negative.empty:
        worst = ", ".join(f"{r['method']} at {size_label(r)}" for _, r in negative.iterrows())
        lines.append(f"Negative transfer (significantly worse than scratch): {worst}.")
    return lines


def size_label(row: pd.Series) -> str:
    """'25', or 'all (272)' for the whole pool."""
    return str(row["size"]) if str(row["subset"]) != "all" else f"all ({row['size']})"
