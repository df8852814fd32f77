"""Checkpoints are an attack surface: a pickle that runs code never runs, anywhere."""

import json
import shutil

import pytest
from torch import nn

from warmstart.errors import CheckpointError, CorruptCheckpointError, UnsafeCheckpointError
from warmstart.weights import load_checkpoint, load_pretrained, sha256_bytes

from .conftest import PAYLOADS, make_evil_pt, run_cli


@pytest.mark.parametrize("payload", sorted(PAYLOADS))
@pytest.mark.parametrize("nested", [True, False])
def test_load_pretrained_refuses_every_payload(tmp_path, payload, nested):
    marker = tmp_path / "pwned"
    evil = make_evil_pt(tmp_path / "evil.pt", marker, payload, nested)
    with pytest.raises(UnsafeCheckpointError, match="needs code to be unpickled"):
        load_pretrained(nn.Linear(2, 1), evil)
    assert not marker.exists()


def test_finetune_from_a_malicious_pickle(tmp_path, small_csv):
    marker = tmp_path / "pwned"
    evil = make_evil_pt(tmp_path / "evil.pth", marker)
    code, text = run_cli("finetune", small_csv, "--from", evil, "--target", "salary_in_usd", "--out", tmp_path / "o")
    assert code == 1 and "needs code to be unpickled" in text and "Traceback" not in text
    assert not marker.exists() and not (tmp_path / "o").exists()


def _poisoned_checkpoint(tmp_path, small_checkpoint, marker):
    """A checkpoint directory whose weights file is a pickle, with a matching sha256."""
    ck = tmp_path / "poisoned"
    shutil.copytree(small_checkpoint, ck)
    evil = make_evil_pt(tmp_path / "evil.pt", marker)
    (ck / "model.safetensors").write_bytes(evil.read_bytes())
    cfg = json.loads((ck / "config.json").read_text())
    cfg["weights"]["sha256"] = sha256_bytes(evil.read_bytes())
    (ck / "config.json").write_text(json.dumps(cfg))
    return ck


@pytest.mark.parametrize("command", ["inspect", "evaluate", "predict", "init-report", "finetune"])
def test_every_command_that_reads_a_checkpoint_refuses_a_poisoned_one(tmp_path, small_checkpoint, small_csv, command):
    marker = tmp_path / "pwned"
    ck = _poisoned_checkpoint(tmp_path, small_checkpoint, marker)
    args = {
        "inspect": ["inspect", ck],
        "evaluate": ["evaluate", ck, small_csv],
        "predict": ["predict", ck, small_csv, "--out", tmp_path / "p.csv"],
        "init-report": ["init-report", "--from", ck],
        "finetune": ["finetune", small_csv, "--from", ck, "--out", tmp_path / "o"],
    }[command]
    code, text = run_cli(*args)
    assert code == 1 and "not a valid safetensors file" in text, text
    assert not marker.exists()


@pytest.mark.parametrize(
    "change,field",
    [
        (lambda c: c.update({"__reduce__": "os.system"}), "__reduce__"),
        (lambda c: c.update({"model": ["not", "a", "dict"]}), "model"),
        (lambda c: c.update({"format": 1}), "format"),
        (lambda c: c["weights"].update({"sha256": 5}), "weights.sha256"),
        (lambda c: c.update({"metrics": "fast"}), "metrics"),
    ],
)
def test_config_with_extra_or_wrong_typed_fields_is_rejected_naming_the_field(tmp_path, small_checkpoint, change, field):
    ck = tmp_path / "ck"
    shutil.copytree(small_checkpoint, ck)
    cfg = json.loads((ck / "config.json").read_text())
    change(cfg)
    (ck / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CorruptCheckpointError, match=field.replace(".", r"\.")):
        load_checkpoint(ck)
    code, text = run_cli("inspect", ck)
    assert code == 1 and field in text


def test_malformed_preprocessing_is_a_checkpoint_error(tmp_path, small_checkpoint, small_csv):
    ck = tmp_path / "ck"
    shutil.copytree(small_checkpoint, ck)
    cfg = json.loads((ck / "config.json").read_text())
    cfg["preprocessing"]["categorical"] = {"job_title": ["no", "sentinels"]}
    (ck / "config.json").write_text(json.dumps(cfg))
    code, text = run_cli("evaluate", ck, small_csv)
    assert code == 1 and "preprocessing is malformed" in text


def test_whole_pickled_model_is_refused_and_convert_needs_trust(tmp_path):
    import torch

    torch.save(nn.Linear(3, 1), tmp_path / "m.pt")
    with pytest.raises(UnsafeCheckpointError, match="state_dict"):
        load_pretrained(nn.Linear(3, 1), tmp_path / "m.pt")
    code, text = run_cli("convert", tmp_path / "m.pt", "--out", tmp_path / "m.safetensors")
    assert code == 1 and "torch.nn.modules.linear.Linear" in text and not (tmp_path / "m.safetensors").exists()


def test_from_neither_file_nor_directory_says_what_it_looked_for(tmp_path, small_csv):
    code, text = run_cli("finetune", small_csv, "--from", tmp_path / "missing", "--out", tmp_path / "o")
    assert code == 1 and "looked for a directory with config.json and model.safetensors" in text
    with pytest.raises(CheckpointError):
        load_pretrained(nn.Linear(2, 1), tmp_path / "missing")
