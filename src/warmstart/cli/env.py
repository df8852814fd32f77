"""``warmstart env``: versions, for bug reports."""

from __future__ import annotations

import json

import click

from ..weights import versions


@click.command("env")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def command(as_json: bool) -> None:
    """Print the versions of warmstart, Python, PyTorch and friends.

    \b
    warmstart env
    warmstart env --json
    """
    import torch

    info = versions()
    info["threads"] = str(torch.get_num_threads())
    info["cuda"] = str(torch.cuda.is_available())
    if as_json:
        click.echo(json.dumps(info))
    else:
        for key, value in info.items():
            click.echo(f"{key:<12} {value}")
