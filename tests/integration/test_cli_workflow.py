"""The CLI end to end on the real survey file: pretrain US -> fine-tune Europe -> evaluate."""

import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from safetensors.torch import load_file

from warmstart.cli.main import cli

US = "company_location=US"
EUROPE = "company_location=@europe"


def run(*args: str, ok: bool = True):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output + repr(result.exception)
    result.text = " ".join(result.output.split())  # messages are wrapped for the terminal
    return result


@pytest.fixture(scope="module")
def runs(tmp_path_factory, survey_csv):
    root = tmp_path_factory.mktemp("runs")
    run("pretrain", survey_csv, "--target", "salary_in_usd", "--rows", US, "--out", root / "us", "--epochs", "60")
    out = run("finetune", survey_csv, "--from", root / "us", "--rows", EUROPE, "--strategy", "freeze:1",
              "--lr", "1e-3", "--epochs", "40", "--out", root / "eu").output
    return root, out


def test_finetune_freeze_1_keeps_frozen_tensors_bit_identical(runs):
    root, output = runs
    parent = load_file(root / "us" / "model.safetensors")
    child = load_file(root / "eu" / "model.safetensors")
    config = json.loads((root / "eu" / "config.json").read_text())
    source_rows = config["model"]["source_rows"]
    for key in ("body.0.0.weight", "body.0.0.bias"):
        assert child[key].equal(parent[key]), key
    for col, n in source_rows.items():
        key = f"embeddings.{col}.weight"
        assert child[key][:n].equal(parent[key]), f"{key}: source rows moved"
    # Every Europe country is new to a US model: its rows were appended and they moved.
    loc = child["embeddings.company_location.weight"]
    n = source_rows["company_location"]
    assert loc.shape[0] > n
    start = parent["embeddings.company_location.weight"][2:].mean(0)
    assert not all(loc[i].equal(start) for i in range(n, loc.shape[0]))
    for key in ("body.1.0.weight", "head.weight", "head.bias"):
        assert not child[key].equal(parent[key]), key
    assert config["lineage"]["strategy"] == "freeze:1"
    assert config["lineage"]["parent"] == json.loads((root / "us" / "config.json").read_text())["weights"]["sha256"]
    assert config["trainable"]["body.0.0.weight"] == "no" and config["trainable"]["head.weight"] == "yes"
    assert "company_location" in output and "GB (172)" in output


def test_pretrain_chooses_the_batch_size_for_the_data_and_records_it(runs, survey_csv, tmp_path):
    root, _ = runs
    config = json.loads((root / "us" / "config.json").read_text())
    assert config["training"]["batch_size"] == 64  # about 1,500 US training rows
    bad = run("pretrain", survey_csv, "--target", "salary_in_usd", "--out", tmp_path / "m", "--batch-size", "0", ok=False)
    assert bad.exit_code == 2 and "neither a positive integer nor 'auto'" in bad.text
    small = run("pretrain", survey_csv, "--target", "salary_in_usd", "--rows", US, "--out", tmp_path / "b",
                "--epochs", "1", "--batch-size", "512")
    assert "in batches of 512" in small.text


def test_evaluate_prints_finite_metrics_in_usd(runs, survey_csv):
    root, _ = runs
    out = run("evaluate", root / "eu", survey_csv, "--rows", EUROPE, "--json").output
    m = json.loads(out)
    assert set(m) == {"mae", "rmse", "r2", "rows"} and m["rows"] == 447
    assert all(math.isfinite(m[k]) for k in ("mae", "rmse", "r2"))
    assert 5_000 < m["mae"] < 100_000, "USD scale, not the log scale"
    assert "MAE" in run("evaluate", root / "eu", survey_csv, "--rows", EUROPE).output


def test_predict_writes_one_prediction_per_input_row_in_order(runs, survey_csv, tmp_path):
    root, _ = runs
    run("predict", root / "eu", survey_csv, "--out", tmp_path / "p.csv")
    original = pd.read_csv(survey_csv)
    pred = pd.read_csv(tmp_path / "p.csv")
    assert len(pred) == len(original)
    pd.testing.assert_frame_equal(pred[original.columns], original)
    assert pred["predicted_salary_in_usd"].notna().all() and (pred["predicted_salary_in_usd"] > 0).all()


def test_inspect_shows_parameters_lineage_and_metrics(runs):
    root, _ = runs
    info = json.loads(run("inspect", root / "eu", "--json").output)
    assert info["lineage"]["strategy"] == "freeze:1"
    flags = {p["name"]: p["trainable"] for p in info["parameters"]}
    assert flags["body.0.0.weight"] == "no" and flags["embeddings.company_location.weight"].startswith("rows")
    assert info["preprocessing"]["target"] == "salary_in_usd"
    text = run("inspect", root / "eu").output
    assert "lineage: fine-tuned from weights" in text and "body.1.0.weight" in text


def test_init_report_json_states_the_default_bound():
    report = json.loads(run("init-report", "--layers", "64,64,1", "--json").output)
    first = report["layers"][0]
    assert first["fan_in"] == 64 and first["bound"] == 0.125
    assert {"name", "fan_in", "bound", "weight_min", "weight_max", "act_mean", "act_std"} <= set(first)
    bad = json.loads(run("init-report", "--layers", "64,64,64,64,64,64,1", "--scheme", "uniform", "--json").output)
    assert bad["problem"] == "explode"


def test_init_report_from_a_checkpoint(runs):
    root, _ = runs
    report = json.loads(run("init-report", "--from", root / "us", "--json").output)
    assert [l["name"] for l in report["layers"]][-1] == "head"


# ---------------------------------------------------------------- bad input

def test_missing_target_column_is_one_paragraph_not_a_traceback(survey_csv, tmp_path):
    r = run("pretrain", survey_csv, "--target", "salary_usd", "--out", tmp_path / "x", ok=False)
    assert r.exit_code == 1 and "did you mean 'salary_in_usd'" in r.output and "Traceback" not in r.output


def test_bad_target_values_are_dropped_with_a_count_or_refused_with_strict(tmp_path, survey_csv):
    df = pd.read_csv(survey_csv).head(300)
    df.loc[[0, 1], "salary_in_usd"] = [0, -3]
    df["salary_in_usd"] = df["salary_in_usd"].astype(object)
    df.loc[2, "salary_in_usd"] = "n/a"
    df.to_csv(tmp_path / "bad.csv", index=False)
    out = run("pretrain", tmp_path / "bad.csv", "--target", "salary_in_usd", "--out", tmp_path / "a", "--epochs", "3").output
    assert "1 not a number, 2 zero or negative" in out
    r = run("pretrain", tmp_path / "bad.csv", "--target", "salary_in_usd", "--out", tmp_path / "b", "--strict", ok=False)
    assert r.exit_code == 1 and "unusable values" in r.text and not (tmp_path / "b").exists()


def test_data_with_other_columns_than_the_checkpoint_expects(runs, tmp_path, survey_csv):
    root, _ = runs
    pd.read_csv(survey_csv).drop(columns=["job_title"]).to_csv(tmp_path / "d.csv", index=False)
    r = run("predict", root / "eu", tmp_path / "d.csv", "--out", tmp_path / "p.csv", ok=False)
    assert r.exit_code == 1 and "job_title" in r.output and not (tmp_path / "p.csv").exists()


def test_empty_filter_result_is_an_error(survey_csv, tmp_path):
    r = run("pretrain", survey_csv, "--target", "salary_in_usd", "--rows", US, "--rows", "company_location=GB",
            "--out", tmp_path / "x", ok=False)
    assert r.exit_code == 1 and "no row passes" in r.text


def test_checkpoint_missing_a_file(runs, tmp_path, survey_csv):
    root, _ = runs
    broken = tmp_path / "broken"
    shutil.copytree(root / "us", broken)
    (broken / "model.safetensors").unlink()
    r = run("evaluate", broken, survey_csv, ok=False)
    assert r.exit_code == 1 and "missing model.safetensors" in r.text


def test_from_a_malicious_pickle_is_refused_and_never_runs(tmp_path, survey_csv):
    marker = tmp_path / "pwned"
    code = textwrap.dedent(f"""
        import os, torch
        class P:
            def __reduce__(self):
                return (os.system, ("touch {marker}",))
        torch.save({{"head.weight": P()}}, {str(tmp_path / 'evil.pt')!r})
    """)
    subprocess.run([sys.executable, "-c", code], check=True)
    r = run("finetune", survey_csv, "--from", tmp_path / "evil.pt", "--target", "salary_in_usd",
            "--rows", EUROPE, "--out", tmp_path / "eu", ok=False)
    assert r.exit_code == 1 and "needs code to be unpickled" in r.text
    assert not marker.exists() and not (tmp_path / "eu").exists()


def test_existing_output_directory_is_refused_unless_overwrite(runs, survey_csv):
    root, _ = runs
    before = (root / "us" / "model.safetensors").read_bytes()
    r = run("pretrain", survey_csv, "--target", "salary_in_usd", "--rows", US, "--out", root / "us", ok=False)
    assert r.exit_code == 1 and "--overwrite" in r.output
    assert (root / "us" / "model.safetensors").read_bytes() == before


def test_foreign_safetensors_source_loads_what_fits(runs, survey_csv, tmp_path):
    root, _ = runs
    shutil.copy(root / "us" / "model.safetensors", tmp_path / "w.safetensors")
    out = run("finetune", survey_csv, "--from", tmp_path / "w.safetensors", "--target", "salary_in_usd",
              "--rows", EUROPE, "--strategy", "full", "--epochs", "5", "--out", tmp_path / "eu").output
    assert "keeps its fresh init" in out and (tmp_path / "eu" / "config.json").exists()


def test_console_script_runs_and_has_examples_in_help():
    exe = Path(sys.executable).parent / "warmstart"
    if not exe.exists():
        pytest.skip("warmstart console script not installed next to this interpreter")
    env = {**os.environ, "COLUMNS": "120"}
    out = subprocess.run([exe, "finetune", "--help"], capture_output=True, text=True, check=True, env=env).stdout
    assert "--strategy" in out and "warmstart finetune salaries --from runs/us" in out
    info = json.loads(subprocess.run([exe, "env", "--json"], capture_output=True, text=True, check=True).stdout)
    assert info["torch"].startswith("2.")


def test_convert_lists_what_a_pickle_imports_and_converts_only_when_trusted(tmp_path):
    import torch
    from torch import nn

    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 1))
    torch.save(model, tmp_path / "model.pt")
    r = run("convert", tmp_path / "model.pt", "--out", tmp_path / "w.safetensors", ok=False)
    assert r.exit_code == 1 and "torch.nn.modules.linear.Linear" in r.text and not (tmp_path / "w.safetensors").exists()
    run("convert", tmp_path / "model.pt", "--out", tmp_path / "w.safetensors", "--trust-pickle")
    weights = load_file(tmp_path / "w.safetensors")
    assert weights["2.weight"].equal(model[2].weight.detach())


def test_convert_names_a_malicious_payload_before_anything_runs(tmp_path):
    marker = tmp_path / "pwned"
    code = textwrap.dedent(f"""
        import os, torch
        class P:
            def __reduce__(self):
                return (os.system, ("touch {marker}",))
        torch.save(P(), {str(tmp_path / 'evil.pt')!r})
    """)
    subprocess.run([sys.executable, "-c", code], check=True)
    r = run("convert", tmp_path / "evil.pt", "--out", tmp_path / "w.safetensors", ok=False)
    assert "posix.system" in r.text or "os.system" in r.text
    assert not marker.exists()


def test_evaluate_says_how_many_rows_the_model_already_saw(runs, survey_csv):
    from warmstart.tabular.workflow import evaluate

    root, _ = runs
    assert evaluate(root / "eu", survey_csv, ["company_location=@europe"])["seen"] == 447
    assert evaluate(root / "eu", survey_csv, ["company_location=US"])["seen"] == 0
    out = run("evaluate", root / "eu", survey_csv, "--rows", EUROPE).text
    assert "447 of these 447 rows" in out and "optimistic" in out


def test_finetune_auto_records_what_it_chose_and_why(runs, survey_csv):
    root, _ = runs
    out = run("finetune", survey_csv, "--from", root / "us", "--rows", "company_location=GB,DE,ES,FR",
              "--strategy", "auto", "--epochs", "15", "--patience", "5", "--out", root / "auto").text
    config = json.loads((root / "auto" / "config.json").read_text())
    auto = config["training"]["auto"]
    assert auto["chose"] in auto["cv_mae"] and len(auto["cv_mae"]) == 7
    assert "grouped CV on the training rows" in auto["why"]
    assert config["lineage"]["strategy"] == f"auto:{auto['chose']}"
    assert f"auto chose {auto['chose']}" in out


def test_recentered_choice_changes_only_the_output_bias(runs, survey_csv):
    import numpy as np
    import torch

    from warmstart.tabular.auto import RECENTERED
    from warmstart.tabular.workflow import load_model, select_rows, train_split, transfer_model

    root, _ = runs
    model, prep, _ = load_model(root / "us")
    rows = select_rows(survey_csv, ["company_location=@europe"], "salary_in_usd")
    model, prep, _ = transfer_model(model, prep, rows.frame)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    idx = np.arange(len(rows.frame))
    result, shift, _ = train_split(model, prep, rows.frame, rows.y, idx[:300], idx[300:], strategy=RECENTERED,
                                   lr=1e-3, epochs=5, batch_size=32, seed=0, patience=5)
    assert result.epochs_run == 0 and shift < 0, "Europe earns less than the US"
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]) == (k != "head.bias"), k
