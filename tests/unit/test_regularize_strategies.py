import pytest
import torch
from torch import nn

from warmstart.errors import ConfigError
from warmstart.regularize import L2SP
from warmstart.strategies import apply_phase_, parse_strategy


def test_l2sp_penalty_equals_the_closed_form():
    torch.manual_seed(0)
    src = nn.Linear(3, 2)
    model = nn.Linear(3, 2)
    reference = {"weight": src.weight.detach().clone()}  # no bias in the source: bias is new
    alpha, beta = 0.3, 0.07
    penalty = L2SP(model, reference, alpha, beta)(model)
    expected = alpha / 2 * (model.weight - src.weight).pow(2).sum() + beta / 2 * model.bias.pow(2).sum()
    torch.testing.assert_close(penalty, expected.detach())


def test_l2sp_grown_embedding_anchors_known_rows_and_treats_new_rows_as_new():
    old = nn.Embedding(3, 2)
    new = nn.Embedding(5, 2)
    penalty = L2SP(new, {"weight": old.weight.detach()}, alpha=1.0, beta=2.0)(new)
    expected = 0.5 * (new.weight[:3] - old.weight).pow(2).sum() + 1.0 * new.weight[3:].pow(2).sum()
    torch.testing.assert_close(penalty, expected.detach())


def test_l2sp_gradient_points_back_to_the_anchor():
    model = nn.Linear(2, 1, bias=False)
    ref = {"weight": torch.zeros(1, 2)}
    with torch.no_grad():
        model.weight.fill_(2.0)
    L2SP(model, ref, alpha=0.5)(model).backward()
    torch.testing.assert_close(model.weight.grad, torch.full((1, 2), 1.0))


@pytest.mark.parametrize(
    "text,name",
    [("scratch", "scratch"), ("full", "full"), ("freeze:2", "freeze:2"), ("probe", "probe"),
     ("lp-ft", "lp-ft"), ("l2sp", "l2sp:0.01"), ("l2sp:0.5", "l2sp:0.5"),
     ("discriminative", "discriminative:0.5")],
)
def test_strategy_names_parse(text, name):
    assert parse_strategy(text).name == name


def test_unknown_strategy_says_did_you_mean():
    with pytest.raises(ConfigError, match="did you mean 'probe'"):
        parse_strategy("prob")
    with pytest.raises(ConfigError, match="not a int"):
        parse_strategy("freeze:x")


def test_probe_phase_trains_only_the_last_block(tiny_mlp):
    trainable = apply_phase_(tiny_mlp, parse_strategy("probe").phases[0])
    assert trainable == ["4.weight", "4.bias"]
    assert [p.requires_grad for p in tiny_mlp.parameters()] == [False] * 4 + [True] * 2


def test_freezing_every_block_is_refused(tiny_mlp):
    with pytest.raises(ConfigError, match="has 3"):
        apply_phase_(tiny_mlp, parse_strategy("freeze:3").phases[0])
