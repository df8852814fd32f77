"""Damaged checkpoints: each damage gives a typed error and a one-paragraph CLI message."""

import json
import shutil

import pytest

from warmstart.errors import CheckpointError, CorruptCheckpointError
from warmstart.weights import load_checkpoint, sha256_bytes

from .conftest import run_cli


def truncate(ck):
    p = ck / "model.safetensors"
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])


def bit_flip(ck):
    p = ck / "model.safetensors"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x10
    p.write_bytes(bytes(data))


def empty(ck):
    (ck / "model.safetensors").write_bytes(b"")


def wrong_format_with_matching_sha(ck):
    data = b'{"not": "safetensors"}'
    (ck / "model.safetensors").write_bytes(data)
    cfg = json.loads((ck / "config.json").read_text())
    cfg["weights"]["sha256"] = sha256_bytes(data)
    (ck / "config.json").write_text(json.dumps(cfg))


def missing_config(ck):
    (ck / "config.json").unlink()


def config_not_json(ck):
    (ck / "config.json").write_text("{'python': 'dict'}")


def missing_weights(ck):
    (ck / "model.safetensors").unlink()


DAMAGE = {
    truncate: "does not match the sha256",
    bit_flip: "does not match the sha256",
    empty: "does not match the sha256",
    wrong_format_with_matching_sha: "not a valid safetensors file",
    missing_config: "is not a warmstart checkpoint: it has no config.json",
    config_not_json: "is not valid JSON",
    missing_weights: "is missing model.safetensors",
}


@pytest.mark.parametrize("damage", list(DAMAGE), ids=lambda f: f.__name__)
def test_each_damage_gives_a_typed_error(tmp_path, small_checkpoint, small_csv, damage):
    ck = tmp_path / "ck"
    shutil.copytree(small_checkpoint, ck)
    damage(ck)
    with pytest.raises(CorruptCheckpointError, match=DAMAGE[damage]):
        load_checkpoint(ck)
    code, text = run_cli("evaluate", ck, small_csv)
    assert code == 1 and DAMAGE[damage] in text and "Traceback" not in text


def test_a_directory_that_does_not_exist(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
