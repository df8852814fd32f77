"""``warmstart init-report``: how layers start, and what that does to activation scale."""

from __future__ import annotations

import json
from pathlib import Path

import click
import torch
from torch import nn

from ..init import init_, init_report, scheme_names
from .output import console, parse_sizes


def mlp(sizes: tuple[int, ...]) -> nn.Sequential:
    """Linear layers of the given sizes (first = inputs) with ReLU between them."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


@click.command("init-report")
@click.option("--layers", default=None, help="Sizes of a ReLU MLP, inputs first (e.g. 64,64,1).")
@click.option("--from", "source", type=click.Path(path_type=Path), default=None, help="A checkpoint directory instead.")
@click.option("--scheme", type=click.Choice(scheme_names()), default=None, help="Re-initialize with this scheme first.")
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(2))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with a 'layers' list.")
def command(layers, source, scheme, batch_size, seed, as_json) -> None:
    """Per layer: fan_in, PyTorch's default bound 1/sqrt(fan_in), the observed weight range,
    and the mean and std of its output on a random N(0, 1) batch.

    \b
    warmstart init-report --layers 64,64,1                 # bound 0.125 for 64 inputs
    warmstart init-report --layers 64,64,64,64,1 --scheme uniform
    warmstart init-report --from runs/us --scheme lsuv
    """
    if (layers is None) == (source is None):
        raise click.UsageError("give exactly one of --layers 64,64,1 or --from DIR")
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    if layers is not None:
        sizes = parse_sizes(layers, "--layers")
        if len(sizes) < 2:
            raise click.BadParameter("needs at least two sizes (inputs, outputs)", param_hint="--layers")
        model: nn.Module = mlp(sizes)
        batch: tuple[torch.Tensor, ...] = (torch.randn(batch_size, sizes[0], generator=g),)
        targets = {nn.Linear: scheme} if scheme else None
    else:
        from ..tabular.workflow import load_model

        model, _, _ = load_model(source)
        cards = [e.num_embeddings for e in model.embeddings.values()]
        cat = torch.stack([torch.randint(0, c, (batch_size,), generator=g) for c in cards], 1)
        batch = (cat, torch.randn(batch_size, model.n_numeric, generator=g))
        targets = {"body.*": scheme, "head": scheme} if scheme else None
    if targets:
        init_(model, targets, batch=batch, generator=g)
    report = init_report(model, batch)
    if as_json:
        click.echo(json.dumps(report.as_dict()))
        return
    console.print(str(report), markup=False)
    if report.problem:
        console.print(f"activations {report.problem} first at layer {report.problem_layer}: "
                      "training from this start will struggle; try the default, kaiming_* or lsuv")
