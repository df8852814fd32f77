"""``report.html``: one self-contained page (plots inlined, no script, no network)."""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from .summary import size_label

# What each method is, for a reader who never saw warmstart.
METHODS = {
    "scratch": "a new network trained on the target rows only (no transfer)",
    "full": "the source network, every layer fine-tuned on the target rows",
    "freeze": "the source network with its embeddings and first K body blocks frozen; the rest fine-tuned",
    "probe": "only the output layer (and embedding rows for categories the source never saw) fine-tuned",
    "lp-ft": "probe first, then every layer fine-tuned (Kumar et al. 2022)",
    "l2sp": "every layer fine-tuned with a penalty pulling weights toward the source's (Li et al. 2018)",
    "discriminative": "every layer fine-tuned, with learning rates shrinking toward the input (Howard & Ruder 2018)",
    "auto": "a strategy and learning rate chosen by cross-validation on the target training rows",
    "median": "predicts the median of the target training rows for every row",
    "source": "the source model as it is, never shown a target row",
    "recentered": "the source model with its output shifted to the target rows' level; no training",
    "ridge": "ridge regression on one-hot categories, target rows only",
    "hgb": "gradient-boosted trees (scikit-learn HistGradientBoosting), target rows only",
    "hgb-pooled": "the same trees on source and target rows together, with a source/target column",
    "mlp-pooled": "a new network trained on source and target rows together, with a source/target column",
}


def describe_method(name: str) -> str:
    base = name.split("@")[0].split(":")[0]
    text = METHODS.get(base, "")
    if "@" in name:
        text += f" (learning rate {name.split('@')[1]})"
    return text


CSS = """
body { font: 15px/1.5 system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #1d1d1f; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
.verdict { background: #f3f7ff; border-left: 4px solid #3366cc; padding: .6rem 1rem; }
.verdict li { margin: .3rem 0; }
table { border-collapse: collapse; font-size: 13px; margin: .5rem 0 1rem; }
th, td { border-bottom: 1px solid #e4e4e4; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child, td.l { text-align: left; }
tr.baseline td { color: #555; } tr.neg td { background: #fff0f0; }
img { max-width: 100%; } pre { background: #f7f7f7; padding: .6rem; overflow-x: auto; font-size: 12px; }
.muted { color: #666; font-size: 13px; }
"""


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _num(x: float, fmt: str) -> str:
    return "" if not isinstance(x, (int, float)) or not math.isfinite(x) else format(x, fmt)


def _interval(row: pd.Series, key: str, fmt: str) -> str:
    # Metrics are stored as <key>_mean, gains as <key>_pct; both with <key>_lo and <key>_hi.
    mean = row[f"{key}_mean"] if f"{key}_mean" in row else row[f"{key}_pct"]
    lo, hi = row[f"{key}_lo"], row[f"{key}_hi"]
    if not math.isfinite(mean):
        return ""
    ci = f" <span class=muted>({_num(lo, fmt)}..{_num(hi, fmt)})</span>" if math.isfinite(lo) else ""
    return _num(mean, fmt) + ci


def summary_table(summary: pd.DataFrame, subset: str) -> str:
    at = summary[summary["subset"] == subset]
    head = ("<tr><th>method</th><th>kind</th><th>MAE (95% CI)</th><th>RMSE</th><th>R²</th>"
            "<th>gain vs scratch %</th><th>gain vs best baseline %</th><th>flag</th></tr>")
    body = []
    for _, r in at.iterrows():
        cls = "neg" if r["negative_transfer"] else r["kind"]
        flag = "negative transfer" if r["negative_transfer"] else ("best baseline" if r["method"] == r["best_baseline"] else "")
        body.append(
            f"<tr class={cls}><td>{html.escape(r['method'])}</td><td class=l>{r['kind']}</td>"
            f"<td>{_interval(r, 'mae', ',.0f')}</td><td>{_num(r['rmse_mean'], ',.0f')}</td>"
            f"<td>{_num(r['r2_mean'], '.3f')}</td><td>{_interval(r, 'gain_vs_scratch', '+.1f')}</td>"
            f"<td>{_interval(r, 'gain_vs_best_baseline', '+.1f')}</td><td class=l>{flag}</td></tr>")
    return f"<table>{head}{''.join(body)}</table>"


def write_report(
    path: Path,
    *,
    title: str,
    verdict: list[str],
    summary: pd.DataFrame,
    plots: list[Path],
    results: pd.DataFrame,
    alignment: str,
    notes: list[str],
    settings: dict[str, Any],
    versions: dict[str, str],
    seconds: float,
) -> Path:
    """Write the page and return its path."""
    subsets = summary.drop_duplicates("subset").sort_values("size")
    labels = [size_label(r) for _, r in subsets.iterrows()]
    auto = results[results["method"] == "auto"][["seed", "size", "detail"]]
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class=muted>{settings['seeds']} seeds, target sizes {', '.join(labels)}; "
        f"errors on held-out target rows that no method trained or early-stopped on; {seconds:,.0f} s.</p>",
        "<h2>Verdict</h2><ul class=verdict>" + "".join(f"<li>{html.escape(v)}</li>" for v in verdict) + "</ul>",
        "<h2>Error vs target size</h2>", *[_img(p) for p in plots],
        "<h2>Results by target size</h2>",
        "<p class=muted>Means over seeds with 95% t-intervals. Gains are paired by seed: "
        "100 × (MAE<sub>ref</sub> − MAE)/MAE<sub>ref</sub>; above zero is better. "
        "Negative transfer: significantly worse than training from scratch.</p>",
    ]
    for label, subset in zip(labels, subsets["subset"]):
        parts += [f"<h3>{html.escape(label)} target training rows</h3>", summary_table(summary, subset)]
    methods = list(dict.fromkeys(summary.sort_values(["kind", "method"], ascending=[False, True])["method"]))
    rows = "".join(f"<tr><td>{html.escape(m)}</td><td class=l>{html.escape(describe_method(m))}</td></tr>"
                   for m in methods)
    parts += ["<h2>What the methods are</h2>",
              "<p class=muted>Strategies start from the source model unless they say otherwise; every "
              "fine-tuning early-stops on rows held out from the training subset. All methods model the "
              "logarithm of the target; errors are in its own units.</p>",
              f"<table><tr><th>method</th><th>what it is</th></tr>{rows}</table>"]
    if not auto.empty:
        rows = "".join(f"<tr><td>{s}</td><td>{n}</td><td class=l>{html.escape(d)}</td></tr>"
                       for s, n, d in auto.itertuples(index=False))
        parts += ["<h2>What auto chose</h2>",
                  "<p class=muted>By grouped cross-validation on the training rows only.</p>",
                  f"<table><tr><th>seed</th><th>size</th><th>choice</th></tr>{rows}</table>"]
    parts += [
        "<h2>Categories: target vs source</h2>",
        "<p class=muted>Categories new to the source get new embedding rows, trained on the target.</p>",
        f"<pre>{html.escape(alignment)}</pre>",
        "<h2>How this was measured</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>",
        f"<pre>{html.escape(json.dumps(settings, indent=2))}</pre>",
        "<h2>Versions</h2>", f"<pre>{html.escape(json.dumps(versions, indent=2))}</pre>",
        "</body></html>",
    ]
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
