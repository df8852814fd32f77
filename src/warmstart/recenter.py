"""Output re-centring: shift a transferred model's output to the target's level.

A source model can rank target rows well and still be off by a constant (European
salaries are about half of US ones for the same job). The closed-form fix is to add the
mean residual to the output layer's bias:

    b <- b + mean_i (y_i - f(x_i))

which makes the model unbiased on the given rows. Fine-tuning from there spends its
small learning rate on structure, not on walking the bias across the gap.
"""

from __future__ import annotations

import torch
from torch import nn

from .errors import ConfigError
from .init import Batch, forward, weighted_layers


def output_layer(model: nn.Module) -> nn.Module:
    """The last weighted layer, which must have a bias to shift."""
    layers = weighted_layers(model)
    if not layers or not isinstance(getattr(layers[-1][1], "bias", None), torch.Tensor):
        raise ConfigError("re-centring needs the model's last layer to have a bias")
    return layers[-1][1]


@torch.no_grad()
def recenter_output_(model: nn.Module, X: Batch, y: torch.Tensor) -> torch.Tensor:
    """Add ``mean(y - f(X))`` to the output bias; return the shift (one value per output)."""
    was = model.training
    model.train(False)
    shift = (y - forward(model, X)).mean(0)
    model.train(was)
    output_layer(model).bias.add_(shift.to(output_layer(model).bias.dtype))
    return shift
