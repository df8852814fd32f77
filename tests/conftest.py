from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
SHARED_CSV = ROOT.parent / "shared" / "data" / "ds_salaries.csv"


@pytest.fixture
def tiny_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 1))


@pytest.fixture
def regression_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    X = torch.randn(256, 8, generator=g)
    y = X[:, :2].sum(dim=1, keepdim=True) + 0.1 * torch.randn(256, 1, generator=g)
    return X, y


@pytest.fixture(scope="session")
def survey_csv() -> str:
    """The shared real survey file (the bundled copy is byte-identical)."""
    if SHARED_CSV.is_file():
        return str(SHARED_CSV)
    from warmstart.tabular.data import bundled_path

    return str(bundled_path("salaries"))
