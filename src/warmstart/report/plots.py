"""Study plots (matplotlib, no display needed): error vs target size, gain over scratch."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def _colors(methods: list[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab20")
    return {m: cmap(i % 20) for i, m in enumerate(methods)}


def plot_error_vs_size(summary: pd.DataFrame, path: Path, target: str = "target") -> Path:
    """MAE vs number of target training rows, one line per method, 95% interval shaded."""
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    methods = list(dict.fromkeys(summary.sort_values(["kind", "method"], ascending=[False, True])["method"]))
    colors = _colors(methods)
    for method in methods:
        part = summary[summary["method"] == method].sort_values("size")
        strategy = part["kind"].iloc[0] == "strategy"
        ax.plot(part["size"], part["mae_mean"], "-" if strategy else "--", marker="o", ms=3, color=colors[method],
                label=method)
        # Shade strategies only: fifteen overlapping bands hide everything (baseline
        # intervals are in the tables).
        if strategy and part["mae_lo"].notna().any():
            ax.fill_between(part["size"], part["mae_lo"], part["mae_hi"], color=colors[method], alpha=0.08)
    ax.set_xscale("log")
    sizes = sorted(summary["size"].unique())
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.minorticks_off()
    ax.set_xlabel("target training rows (log scale)")
    ax.set_ylabel(f"MAE of {target} on the test rows")
    ax.set_title("Error vs target size (solid: strategies with 95% intervals; dashed: baselines)")
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_gain_vs_scratch(summary: pd.DataFrame, path: Path) -> Path:
    """Paired MAE gain over training from scratch, per strategy and size (above 0: better)."""
    fig, ax = plt.subplots(figsize=(9, 5), dpi=110)
    part = summary[(summary["kind"] == "strategy") & (summary["method"] != "scratch")]
    methods = sorted(part["method"].unique())
    colors = _colors(methods)
    for method in methods:
        m = part[part["method"] == method].sort_values("size")
        ax.plot(m["size"], m["gain_vs_scratch_pct"], marker="o", ms=3, color=colors[method], label=method)
        if m["gain_vs_scratch_lo"].notna().any():
            ax.fill_between(m["size"], m["gain_vs_scratch_lo"], m["gain_vs_scratch_hi"], color=colors[method], alpha=0.12)
    ax.axhline(0, color="black", lw=1)
    ax.set_xscale("log")
    sizes = sorted(summary["size"].unique())
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.minorticks_off()
    ax.set_xlabel("target training rows (log scale)")
    ax.set_ylabel("MAE reduction vs scratch (%)")
    ax.set_title("Gain over training from scratch (above zero: transfer helps)")
    ax.grid(alpha=0.3)
    if methods:
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def is_blank(path: Path) -> bool:
    """True when an image has (almost) a single colour: nothing was drawn."""
    img = plt.imread(path)
    return float(np.std(img[..., :3])) < 1e-3
