import math

import pytest
import torch
from torch import nn

from warmstart.errors import ConfigError, PatternError
from warmstart.init import SCHEMES, init_, init_report, scheme_names


def test_default_linear_init_lies_within_one_over_sqrt_fan_in():
    torch.manual_seed(0)
    layer = nn.Linear(64, 32)
    bound = 1 / math.sqrt(64)
    assert bound == 0.125
    w = layer.weight
    assert w.min() >= -bound and w.max() <= bound
    # 2048 uniform draws: the extremes come within 1% of the bound.
    assert w.max() > 0.99 * bound and w.min() < -0.99 * bound


def test_init_report_states_the_default_bound_for_64_inputs():
    report = init_report(nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 1)))
    first = report.layers[0]
    assert first.fan_in == 64 and first.bound == pytest.approx(0.125)
    assert -0.125 <= first.weight_min < first.weight_max <= 0.125
    assert report.layers[1].bound == pytest.approx(1 / math.sqrt(32))


def test_uniform_scheme_draws_from_zero_to_one(tiny_mlp):
    init_(tiny_mlp, "uniform")
    for layer in (tiny_mlp[0], tiny_mlp[2], tiny_mlp[4]):
        assert layer.weight.min() >= 0 and layer.weight.max() < 1
        assert torch.count_nonzero(layer.bias) == 0


def test_every_torch_init_scheme_is_registered():
    public = {n[:-1] for n in dir(nn.init) if n.endswith("_") and not n.startswith("_")}
    assert public <= set(SCHEMES)
    assert {"default", "lsuv"} <= set(scheme_names())


def test_rules_by_name_pattern_and_by_type(tiny_mlp):
    before = tiny_mlp[4].weight.clone()
    init_(tiny_mlp, {"0": ("constant", {"val": 0.5}), "2.weight": "zeros"})
    assert torch.all(tiny_mlp[0].weight == 0.5)
    assert torch.all(tiny_mlp[2].weight == 0)
    torch.testing.assert_close(tiny_mlp[4].weight, before)
    init_(tiny_mlp, {nn.Linear: "ones"})
    assert all(torch.all(tiny_mlp[i].weight == 1) for i in (0, 2, 4))


def test_xavier_uniform_matches_its_closed_form_bound():
    layer = nn.Linear(100, 50)
    init_(layer, "xavier_uniform")
    a = math.sqrt(6 / (100 + 50))
    assert layer.weight.abs().max() <= a and layer.weight.abs().max() > 0.98 * a


def test_seeded_init_is_reproducible(tiny_mlp):
    init_(tiny_mlp, "kaiming_normal", generator=torch.Generator().manual_seed(3))
    first = tiny_mlp[0].weight.clone()
    init_(tiny_mlp, "kaiming_normal", generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(tiny_mlp[0].weight, first, rtol=0, atol=0)


def test_lsuv_gives_unit_activation_variance_per_layer():
    torch.manual_seed(0)
    net = nn.Sequential(*[m for _ in range(6) for m in (nn.Linear(32, 32), nn.Tanh())])
    batch = torch.randn(512, 32) * 5
    init_(net, "lsuv", batch=batch)
    report = init_report(net, batch)
    for layer in report.layers:
        assert layer.act_std**2 == pytest.approx(1.0, abs=0.1), layer.name


def test_lsuv_without_batch_is_a_clear_error(tiny_mlp):
    with pytest.raises(ConfigError, match="batch"):
        init_(tiny_mlp, "lsuv")


def test_report_names_where_uniform_init_of_16_layers_explodes():
    torch.manual_seed(0)
    net = nn.Sequential(*[m for _ in range(16) for m in (nn.Linear(64, 64), nn.ReLU())])
    init_(net, "uniform")
    report = init_report(net, torch.randn(128, 64))
    assert report.problem == "explode"
    stds = {l.name: l.act_std for l in report.layers}
    assert stds[report.problem_layer] > 1e3
    earlier = [l for l in report.layers][: [l.name for l in report.layers].index(report.problem_layer)]
    assert all(l.act_std <= 1e3 for l in earlier)
    assert report.problem_layer in str(report)


def test_report_flags_vanishing_activations():
    net = nn.Sequential(nn.Linear(16, 16), nn.Linear(16, 16))
    init_(net, {"0": ("constant", {"val": 1e-5})})
    assert init_report(net, torch.randn(32, 16)).problem == "vanish"


def test_unknown_scheme_suggests_the_closest(tiny_mlp):
    with pytest.raises(ConfigError, match="did you mean 'xavier_uniform'"):
        init_(tiny_mlp, "xavier_unifrom")


def test_rule_matching_no_layer_lists_the_layers(tiny_mlp):
    with pytest.raises(PatternError, match="layers are: 0, 2, 4"):
        init_(tiny_mlp, {"body.*": "zeros"})
