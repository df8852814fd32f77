"""Crashes and full or read-only disks never lose the previous checkpoint."""

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from warmstart.errors import CheckpointError
from warmstart.weights import load_checkpoint, save_checkpoint

SAVER = """
import sys, torch
from torch import nn
from warmstart.weights import save_checkpoint
torch.manual_seed(int(sys.argv[2]))
model = nn.Sequential(*[nn.Linear(256, 256) for _ in range(6)])
print("ready", flush=True)
for i in range(100_000):
    save_checkpoint(sys.argv[1], model, {"metrics": {"i": i}}, overwrite=True)
"""


def big_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(*[nn.Linear(256, 256) for _ in range(6)])


def checkpoints_in(folder: Path) -> list[str]:
    """Directories that load as checkpoints: only the real one, never a partial write."""
    found = []
    for d in folder.iterdir():
        try:
            load_checkpoint(d)
            found.append(d.name)
        except CheckpointError:
            pass
    return found


def test_twenty_kills_during_save_checkpoint_never_lose_the_checkpoint(tmp_path):
    target = tmp_path / "ck"
    save_checkpoint(target, big_model())
    rng = random.Random(7)
    delays = sorted(rng.uniform(0.0, 0.4) for _ in range(20))
    for delay in delays:
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(target), "1"], stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        ckpt = load_checkpoint(target)  # verifies the sha256 of the weights
        assert len(ckpt.state_dict) == 12
        assert checkpoints_in(tmp_path) == ["ck"]
    # The next save clears the partial directories the kills left behind.
    save_checkpoint(target, big_model(), overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_kills_during_pretrain_never_leave_a_broken_checkpoint(tmp_path, small_csv, small_checkpoint):
    import shutil

    target = tmp_path / "us"
    shutil.copytree(small_checkpoint, target)
    before = (target / "model.safetensors").read_bytes()
    exe = Path(sys.executable).parent / "warmstart"
    if not exe.exists():
        pytest.skip("warmstart console script not installed next to this interpreter")
    rng = random.Random(3)
    for delay in sorted(rng.uniform(1.0, 4.0) for _ in range(6)):
        proc = subprocess.Popen([exe, "pretrain", str(small_csv), "--target", "salary_in_usd", "--out", str(target),
                                 "--overwrite", "--epochs", "30", "--seed", "1"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        ckpt = load_checkpoint(target)  # the old checkpoint, or a complete new one
        assert (target / "model.safetensors").read_bytes() == before or ckpt.config["training"]["seed"] == 1
        assert checkpoints_in(tmp_path) == ["us"]


def _mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.decode().strip() or 'not permitted'})")


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "1m")
    yield disk
    subprocess.run(["umount", str(disk)], check=False)


def test_full_disk_gives_a_clear_error_and_keeps_the_old_checkpoint(small_disk):
    target = small_disk / "ck"
    save_checkpoint(target, nn.Linear(64, 64))
    before = load_checkpoint(target).sha256
    with pytest.raises(CheckpointError, match=r"disk is full.*nothing was changed") as err:
        save_checkpoint(target, big_model(), overwrite=True)  # ~1.6 MB on a 1 MB disk
    assert str(target) in str(err.value)
    assert load_checkpoint(target).sha256 == before
    assert sorted(p.name for p in small_disk.iterdir()) == ["ck"], "the partial write was removed"


def test_read_only_directory_gives_a_clear_error_and_keeps_the_old_checkpoint(small_disk):
    target = small_disk / "ck"
    save_checkpoint(target, nn.Linear(8, 8))
    before = load_checkpoint(target).sha256
    done = subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot remount read-only here")
    with pytest.raises(CheckpointError, match="cannot write a checkpoint in") as err:
        save_checkpoint(target, nn.Linear(8, 8), overwrite=True)
    assert str(small_disk) in str(err.value)
    assert load_checkpoint(target).sha256 == before
