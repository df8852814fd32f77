from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from warmstart.cli.main import cli
from warmstart.tabular.data import synthetic_salaries


def run_cli(*args) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, " ".join(result.output.split())


PAYLOADS = {
    "os.system": "(os.system, ('touch {marker}',))",
    "builtins.exec": "(exec, (\"open({marker!r}, 'w').write('x')\",))",
    "subprocess.call": "(__import__('subprocess').call, (['touch', '{marker}'],))",
}


def make_evil_pt(path: Path, marker: Path, payload: str = "os.system", nested: bool = True) -> Path:
    """Write a .pt whose unpickling would create ``marker`` (in a separate process)."""
    reduce = PAYLOADS[payload].format(marker=str(marker))
    obj = '{"head.weight": P()}' if nested else "P()"
    code = textwrap.dedent(f"""
        import os, torch
        class P:
            def __reduce__(self):
                return {reduce}
        torch.save({obj}, {str(path)!r})
    """)
    subprocess.run([sys.executable, "-c", code], check=True)
    assert path.exists() and not marker.exists()
    return path


@pytest.fixture(scope="session")
def small_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "small.csv"
    synthetic_salaries(600, seed=5).to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory, small_csv) -> Path:
    out = tmp_path_factory.mktemp("ck") / "us"
    code, text = run_cli("pretrain", small_csv, "--target", "salary_in_usd", "--rows", "company_location=US",
                         "--out", out, "--epochs", "5")
    assert code == 0, text
    return out
