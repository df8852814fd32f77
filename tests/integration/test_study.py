"""A small study on the real survey, end to end, and its report in a real browser."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from warmstart.cli.main import cli
from warmstart.report.plots import is_blank
from warmstart.study import StudySettings, load_study_data, run_study, split_target
from warmstart.tabular.encoding import feature_columns

SMALL = dict(target="salary_in_usd", source=["company_location=US"], target_rows=["company_location=@europe"],
             sizes="25,50", seeds=2, epochs=60, patience=10, auto_folds=3)


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory, survey_csv):
    out = tmp_path_factory.mktemp("study") / "s"
    result = CliRunner().invoke(cli, [
        "study", survey_csv, "--target", "salary_in_usd", "--source", "company_location=US",
        "--target-rows", "company_location=@europe", "--sizes", "25,50", "--seeds", "2",
        "--strategies", "scratch,probe,lp-ft,auto", "--epochs", "60", "--patience", "10", "--out", str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return out, result.output


def test_study_writes_files_that_parse(study_dir):
    out, output = study_dir
    results = pd.read_csv(out / "results.csv")
    assert {"seed", "size", "method", "kind", "mae", "rmse", "r2", "seconds"} <= set(results.columns)
    assert set(results["size"]) == {25, 50} and set(results["seed"]) == {0, 1}
    assert set(results["subset"].astype(str)) == {"25", "50"}
    assert set(results["kind"]) == {"strategy", "baseline"}
    methods = set(results["method"])
    assert {"scratch", "probe", "lp-ft", "auto", "median", "source", "recentered", "ridge", "hgb", "hgb-pooled",
            "mlp-pooled"} == methods
    assert len(results) == 2 * 2 * len(methods) and results[["mae", "rmse"]].gt(0).all().all()
    summary = pd.read_csv(out / "summary.csv")
    assert {"mae_mean", "mae_lo", "mae_hi", "gain_vs_scratch_pct", "gain_vs_best_baseline_pct",
            "negative_transfer"} <= set(summary.columns)
    assert json.loads((out / "settings.json").read_text())["seeds"] == 2
    assert results[results.method == "auto"]["detail"].str.startswith("chose ").all()
    assert "With 25 Europe rows" in output


def test_plots_render(study_dir):
    out, _ = study_dir
    for name in ("mae_vs_size.png", "gain_vs_scratch.png"):
        assert not is_blank(out / name), name


def test_same_seeds_give_the_same_results_in_one_process_or_two(survey_csv):
    kwargs = dict(SMALL, sizes="25", seeds=2, strategies=["scratch", "probe"], baselines=["median", "ridge", "recentered"])
    a = run_study(survey_csv, workers=1, **kwargs).results.drop(columns="seconds")
    b = run_study(survey_csv, workers=2, **kwargs).results.drop(columns="seconds")
    c = run_study(survey_csv, workers=1, **kwargs).results.drop(columns="seconds")
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(a, c)


def test_target_split_never_puts_identical_rows_on_both_sides(survey_csv):
    settings = StudySettings(survey_csv, "salary_in_usd", ["company_location=US"], ["company_location=@europe"],
                             [25], 1, ["scratch"], ["median"], dedupe=False)
    data = load_study_data(settings)
    cols = feature_columns(data.target, "salary_in_usd")
    for seed in range(5):
        test_idx, pool = split_target(data.target, cols, 0.3, seed)
        key = data.target[cols].astype(str).agg("|".join, axis=1)
        assert not set(key.iloc[test_idx]) & set(key.iloc[pool])
        assert len(test_idx) + len(pool) == len(data.target)


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--enable-logging=stderr", "--v=0"]


def _open(page: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    exe = _chromium()
    return subprocess.run([exe, *CHROME_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *extra, page.as_uri()],
                          capture_output=True, text=True, timeout=120)


def console_errors(log: str) -> list[str]:
    return re.findall(r":CONSOLE(?:\(\d+\)|:\d+)\] .*", log)


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_report_opens_in_headless_chromium_without_console_errors(study_dir, tmp_path):
    out, _ = study_dir
    # The detector must see a console error when there is one.
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>console.error('boom')</script></body></html>")
    assert console_errors(_open(bad, tmp_path, "--dump-dom").stderr)

    dom = _open(out / "report.html", tmp_path, "--dump-dom")
    assert "Verdict" in dom.stdout and "With 25" in dom.stdout
    assert dom.stdout.count("data:image/png;base64,") == 2
    assert "What the methods are" in dom.stdout and "ridge regression on one-hot categories" in dom.stdout
    assert not console_errors(dom.stderr), console_errors(dom.stderr)
    shot = tmp_path / "shot.png"
    _open(out / "report.html", tmp_path, f"--screenshot={shot}", "--window-size=1200,1600")
    assert shot.exists() and not is_blank(shot)


def test_cohort_and_separate_training_agree(survey_csv):
    kwargs = dict(SMALL, sizes="25", seeds=1, strategies=["scratch", "probe", "lp-ft", "l2sp", "freeze:1"],
                  baselines=["median"], workers=1)
    a = run_study(survey_csv, cohort=True, **kwargs).results
    b = run_study(survey_csv, cohort=False, **kwargs).results
    assert list(a["method"]) == list(b["method"]) and list(a["seed"]) == list(b["seed"])
    rel = ((a["mae"] - b["mae"]).abs() / b["mae"]).to_numpy()
    # Float summation order differs; only a near-tie in early stopping could move a result.
    assert (rel < 1e-3).sum() >= len(rel) - 1, rel
