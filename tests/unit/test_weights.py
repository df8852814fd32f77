import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from torch import nn

from warmstart.errors import (
    CheckpointError,
    CorruptCheckpointError,
    ShapeMismatchError,
    UnsafeCheckpointError,
)
from warmstart.weights import WEIGHTS, load_checkpoint, load_pretrained, save_checkpoint


def net(out: int = 1) -> nn.Module:
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, out))


def test_save_load_round_trip_is_bit_identical(tmp_path, tiny_mlp):
    save_checkpoint(tmp_path / "ck", tiny_mlp, {"model": {"kind": "mlp"}}, history=[{"epoch": 1, "loss": 0.5}])
    torch.manual_seed(9)
    fresh = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 1))
    report = load_pretrained(fresh, tmp_path / "ck")
    assert len(report.loaded) == 6 and not report.missing
    for (k, a), b in zip(tiny_mlp.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), k
    ckpt = load_checkpoint(tmp_path / "ck")
    assert ckpt.config["format"] == "warmstart/1" and ckpt.config["model"] == {"kind": "mlp"}
    assert ckpt.config["weights"]["sha256"] == ckpt.sha256 == report.sha256
    assert ckpt.history() == [{"epoch": "1", "loss": "0.5"}]
    assert sorted(os.listdir(tmp_path)) == ["ck"], "no temporary directory left behind"


def test_existing_directory_is_refused_unless_overwrite(tmp_path, tiny_mlp):
    save_checkpoint(tmp_path / "ck", tiny_mlp)
    with pytest.raises(CheckpointError, match="--overwrite"):
        save_checkpoint(tmp_path / "ck", tiny_mlp)
    save_checkpoint(tmp_path / "ck", tiny_mlp, overwrite=True)


def test_truncated_weights_raise_the_typed_error(tmp_path, tiny_mlp):
    save_checkpoint(tmp_path / "ck", tiny_mlp)
    path = tmp_path / "ck" / WEIGHTS
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(CorruptCheckpointError, match="sha256"):
        load_checkpoint(tmp_path / "ck")


def test_one_changed_byte_raises_the_typed_error(tmp_path, tiny_mlp):
    save_checkpoint(tmp_path / "ck", tiny_mlp)
    path = tmp_path / "ck" / WEIGHTS
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match="sha256"):
        load_pretrained(net(), tmp_path / "ck", strict=False, on_mismatch="skip")


def test_config_with_unknown_field_is_rejected_naming_it(tmp_path, tiny_mlp):
    save_checkpoint(tmp_path / "ck", tiny_mlp)
    cfg = json.loads((tmp_path / "ck" / "config.json").read_text())
    cfg["__reduce__"] = "os.system"
    (tmp_path / "ck" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CorruptCheckpointError, match="__reduce__"):
        load_checkpoint(tmp_path / "ck")


def test_malicious_pickle_is_refused_and_its_payload_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    code = textwrap.dedent(f"""
        import os, torch
        class Payload:
            def __reduce__(self):
                return (os.system, ("touch {marker}",))
        torch.save({{"weight": Payload()}}, {str(evil)!r})
    """)
    subprocess.run([sys.executable, "-c", code], check=True)
    assert evil.exists() and not marker.exists()
    with pytest.raises(UnsafeCheckpointError, match="needs code"):
        load_pretrained(net(), evil)
    assert not marker.exists()


def test_whole_pickled_model_is_refused_with_a_state_dict_hint(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(net(), path)
    with pytest.raises(UnsafeCheckpointError, match="state_dict"):
        load_pretrained(net(), path)


def test_foreign_pt_state_dict_loads(tmp_path):
    src = net()
    torch.save({"state_dict": {"module." + k: v for k, v in src.state_dict().items()}}, tmp_path / "w.pth")
    dst = net()
    load_pretrained(dst, tmp_path / "w.pth")
    assert torch.equal(dst[2].weight, src[2].weight)


def test_changed_head_shape_strict_raises_listing_key_and_shapes(tmp_path):
    save_checkpoint(tmp_path / "ck", net(1))
    with pytest.raises(ShapeMismatchError, match=r"2\.weight: source \[1, 16\] vs model \[3, 16\]"):
        load_pretrained(net(3), tmp_path / "ck")


def test_changed_head_shape_skip_keeps_fresh_init_for_exactly_that_key(tmp_path):
    src = net(1)
    save_checkpoint(tmp_path / "ck", src)
    dst = net(3)
    fresh_head = dst[2].weight.detach().clone()
    report = load_pretrained(dst, tmp_path / "ck", on_mismatch="skip")
    assert report.skipped == ["2.weight", "2.bias"]
    assert torch.equal(dst[2].weight, fresh_head)
    assert torch.equal(dst[0].weight, src[0].weight)
    assert "keeps its fresh init" in str(report)


def test_missing_source_path_says_what_it_looked_for(tmp_path):
    with pytest.raises(CheckpointError, match="neither a checkpoint directory nor a weights file"):
        load_pretrained(net(), tmp_path / "nope")


def test_read_only_directory_gives_a_clear_error_and_keeps_the_old(tmp_path, tiny_mlp):
    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions; covered by the reliability suite")
    save_checkpoint(tmp_path / "ck", tiny_mlp)
    os.chmod(tmp_path, 0o555)
    try:
        with pytest.raises(CheckpointError, match=str(tmp_path)):
            save_checkpoint(tmp_path / "ck", net(), overwrite=True)
    finally:
        os.chmod(tmp_path, 0o755)
    load_checkpoint(tmp_path / "ck")


SAVER = """
import sys, torch
from torch import nn
from warmstart.weights import save_checkpoint
torch.manual_seed(1)
model = nn.Sequential(*[nn.Linear(256, 256) for _ in range(8)])
print("ready", flush=True)
for i in range(10_000):
    save_checkpoint(sys.argv[1], model, {"metrics": {"i": i}}, overwrite=True)
"""


@pytest.mark.parametrize("delay", [0.05, 0.13, 0.29])
def test_kill_9_during_save_leaves_the_previous_checkpoint_loadable(tmp_path, tiny_mlp, delay):
    target = tmp_path / "ck"
    save_checkpoint(target, nn.Sequential(*[nn.Linear(256, 256) for _ in range(8)]))
    proc = subprocess.Popen([sys.executable, "-c", SAVER, str(target)], stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"ready"
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ckpt = load_checkpoint(target)  # verifies the sha256
    assert len(ckpt.state_dict) == 16
