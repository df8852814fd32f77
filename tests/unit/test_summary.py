import math

import numpy as np
import pandas as pd
import pytest

from warmstart.report.summary import summarize, t_interval, verdict


def test_t_interval_matches_the_closed_form():
    # n = 5: mean 3, s = sqrt(2.5), t_{0.975, 4} = 2.776445 (tables)
    mean, lo, hi = t_interval([1, 2, 3, 4, 5])
    half = 2.776445 * math.sqrt(2.5) / math.sqrt(5)
    assert mean == 3 and lo == pytest.approx(3 - half, abs=1e-5) and hi == pytest.approx(3 + half, abs=1e-5)
    # n = 2: t_{0.975, 1} = 12.7062
    mean, lo, hi = t_interval([0.0, 2.0])
    assert hi - mean == pytest.approx(12.7062 * math.sqrt(2) / math.sqrt(2), abs=1e-3)
    assert math.isnan(t_interval([4.0])[1])


def _results(factor: dict[str, float], seeds: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for seed in range(seeds):
        base = 100 + 10 * rng.standard_normal()
        for method, f in factor.items():
            kind = "baseline" if method in ("median", "ridge") else "strategy"
            rows.append({"seed": seed, "subset": "25", "size": 25, "method": method, "kind": kind, "mae": base * f,
                         "rmse": base * f * 1.3, "r2": 0.1, "seconds": 0.1, "detail": ""})
    return pd.DataFrame(rows)


def test_paired_gains_and_negative_transfer_flags():
    s = summarize(_results({"scratch": 1.0, "probe": 0.9, "full": 1.2, "median": 1.05, "ridge": 0.95}))
    probe = s[s.method == "probe"].iloc[0]
    assert probe["gain_vs_scratch_pct"] == pytest.approx(10.0)
    assert probe["gain_vs_scratch_lo"] == pytest.approx(10.0) and not probe["negative_transfer"]
    assert probe["best_baseline"] == "ridge"
    assert probe["gain_vs_best_baseline_pct"] == pytest.approx(100 * (0.95 - 0.9) / 0.95)
    full = s[s.method == "full"].iloc[0]
    assert full["negative_transfer"] and full["gain_vs_scratch_pct"] == pytest.approx(-20.0)
    assert list(s["method"][:2]) == ["probe", "ridge"], "ranked by mean MAE"
    assert s[s.method == "probe"]["beats_median"].iloc[0]


def test_verdict_names_the_winner_and_negative_transfer():
    lines = verdict(summarize(_results({"scratch": 1.0, "probe": 0.9, "full": 1.2, "median": 1.05, "ridge": 0.95})),
                    "Europe")
    assert lines[0].startswith("With 25 Europe rows, the best strategy is probe")
    assert "beats the best baseline, ridge" in lines[0]
    assert any("beats training from scratch (95% interval above zero) with 25 rows" in l for l in lines)
    assert any("Negative transfer" in l and "full at 25" in l for l in lines)


def test_verdict_says_so_when_nothing_beats_the_baseline():
    lines = verdict(summarize(_results({"scratch": 1.0, "probe": 1.1, "median": 0.8})), "Europe")
    assert "the best baseline, median, is better" in lines[0]
    assert "At no size does transfer beat training from scratch" in " ".join(lines)
