"""Every command works with no network at all (a fresh network namespace)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def offline(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["unshare", "-n", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def exe() -> str:
    path = Path(sys.executable).parent / "warmstart"
    if not path.exists():
        pytest.skip("warmstart console script not installed next to this interpreter")
    if shutil.which("unshare") is None or offline("true").returncode != 0:
        pytest.skip("cannot create a network namespace here (unshare -n)")
    probe = offline(sys.executable, "-c", "import socket; socket.create_connection(('1.1.1.1', 443), timeout=2)")
    assert probe.returncode != 0, "the namespace should have no network"
    return str(path)


def test_workflow_runs_offline(exe, tmp_path):
    demo = offline(exe, "demo", "--out", str(tmp_path / "demo"))
    assert demo.returncode == 0, demo.stderr
    assert "held-out Europe rows" in demo.stdout
    for args in (["evaluate", str(tmp_path / "demo" / "us"), "salaries", "--json"],
                 ["inspect", str(tmp_path / "demo" / "freeze-1")],
                 ["predict", str(tmp_path / "demo" / "us"), "salaries", "--out", str(tmp_path / "p.csv")],
                 ["init-report", "--layers", "64,64,1"],
                 ["env"]):
        done = offline(exe, *args)
        assert done.returncode == 0, (args, done.stderr)
