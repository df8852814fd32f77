"""L2-SP: keep fine-tuned weights near the pretrained starting point.

Li, Grandvalet & Davoine (2018), "Explicit inductive bias for transfer learning with
convolutional networks":

    Omega(w) = alpha/2 * ||w_S - w0_S||^2 + beta/2 * ||w_new||^2

``w_S`` are the parameters that exist in the source model (``w0_S`` their pretrained
values), ``w_new`` those that do not (a new head, or embedding rows added for categories
the source never saw). Only trainable parameters are penalized: frozen ones are constant.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn


class L2SP(nn.Module):
    """The L2-SP penalty of ``model`` toward ``reference`` (a state dict of pretrained values)."""

    def __init__(
        self, model: nn.Module, reference: Mapping[str, torch.Tensor], alpha: float = 0.01, beta: float = 0.0
    ) -> None:
        super().__init__()
        self.alpha, self.beta = float(alpha), float(beta)
        self.names: list[str] = []
        self._anchors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for name, p in model.named_parameters():
            w0 = torch.zeros_like(p)
            shared = torch.zeros_like(p, dtype=torch.bool)
            ref = reference.get(name)
            if ref is not None and ref.dim() == p.dim():
                # Overlapping leading slice: the whole tensor when shapes agree, the known
                # rows of an embedding table that grew.
                region = tuple(slice(0, min(a, b)) for a, b in zip(ref.shape, p.shape))
                w0[region] = ref[region].to(p.dtype)
                shared[region] = True
            self.names.append(name)
            self._anchors[name] = (w0.detach(), shared)

    def forward(self, model: nn.Module) -> torch.Tensor:
        total = torch.zeros(())
        for name, p in model.named_parameters():
            if not p.requires_grad or name not in self._anchors:
                continue
            w0, shared = self._anchors[name]
            diff = torch.where(shared, p - w0, torch.zeros_like(p))
            new = torch.where(shared, torch.zeros_like(p), p)
            total = total + 0.5 * self.alpha * diff.pow(2).sum() + 0.5 * self.beta * new.pow(2).sum()
        return total
