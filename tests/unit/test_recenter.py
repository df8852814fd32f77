import torch

from warmstart.recenter import recenter_output_
from warmstart.tabular.model import TabularMLP


def test_recentering_makes_the_mean_residual_zero_and_changes_only_the_bias(tiny_mlp, regression_data):
    X, y = regression_data
    y = y - 7.0  # a target level the model has never seen
    weight = tiny_mlp[4].weight.detach().clone()
    shift = recenter_output_(tiny_mlp, X, y)
    with torch.no_grad():
        residual = (y - tiny_mlp(X)).mean()
    assert abs(residual.item()) < 1e-5 and shift.item() < -6
    assert torch.equal(tiny_mlp[4].weight, weight)


def test_unknown_rows_become_the_mean_category():
    model = TabularMLP({"c": 6}, 1, hidden=(4,))
    model.set_unknown_rows_()
    w = model.embeddings["c"].weight
    torch.testing.assert_close(w[0], w[2:].mean(0))
