"""``warmstart demo``: the three techniques on a small model, end to end."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click
import torch
from torch import nn

from ..init import init_, init_report
from ..train import fit
from ..weights import load_pretrained, save_checkpoint


@click.command("demo")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to write the checkpoints (default: a temporary directory).")
def command(out: Path | None) -> None:
    """Initialize, pretrain, save, load and fine-tune a small network on synthetic data."""
    out = out or Path(tempfile.mkdtemp(prefix="warmstart-demo-"))
    g = torch.Generator().manual_seed(0)
    X = torch.randn(2000, 64, generator=g)
    w = torch.randn(64, 1, generator=g)
    y_src, y_tgt = X @ w, X @ w + 0.5 * X[:, :1]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
    click.echo("1. Default init of nn.Linear(64, 64): U(-1/sqrt(64), 1/sqrt(64)) = +-0.125")
    click.echo(str(init_report(model, X[:256])))
    init_(model, "lsuv", batch=X[:256])
    click.echo("   after LSUV:")
    click.echo(str(init_report(model, X[:256])))
    result = fit(model, X[:1500], y_src[:1500], epochs=40, lr=1e-3, val_fraction=0.2)
    click.echo(f"2. Pretrained on the source task: best validation MSE {result.best_val_loss:.4f}")
    path = save_checkpoint(out / "source", model, {"model": {"layers": [64, 64, 64, 1]}},
                           history=result.history, overwrite=True)
    click.echo(f"   saved to {path}")
    for strategy in ("scratch", "freeze:1"):
        torch.manual_seed(1)
        child = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
        load_pretrained(child, path)
        r = fit(child, X[1500:1600], y_tgt[1500:1600], strategy=strategy, epochs=200, lr=1e-4,
                val=(X[1600:], y_tgt[1600:]), patience=10)
        click.echo(f"3. Target task, 100 rows, {strategy:<9} lr 1e-4: validation MSE {r.best_val_loss:.4f}")
