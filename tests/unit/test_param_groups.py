import pytest
import torch

from warmstart.errors import ConfigError
from warmstart.freeze import freeze, unfreeze
from warmstart.param_groups import add_param_groups_, make_optimizer, param_groups


def test_discriminative_rates_decay_toward_the_input(tiny_mlp):
    groups = param_groups(tiny_mlp, 1e-2, lr_decay=0.5)
    rates = {g["name"].split("/")[0]: g["lr"] for g in groups}
    assert rates == pytest.approx({"0": 2.5e-3, "2": 5e-3, "4": 1e-2})


def test_no_weight_decay_on_biases_and_frozen_params_left_out(tiny_mlp):
    freeze(tiny_mlp, "0.*")
    groups = param_groups(tiny_mlp, 1e-3, weight_decay=0.1)
    names = {n: g["weight_decay"] for g in groups for n in g["param_names"]}
    assert "0.weight" not in names and "0.bias" not in names
    assert names["2.weight"] == 0.1 and names["2.bias"] == 0.0 and names["4.bias"] == 0.0


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_groups_work_with_torch_optimizers(tiny_mlp, name):
    opt = make_optimizer(param_groups(tiny_mlp, 1e-3, lr_decay=0.5), name)
    assert sum(len(g["params"]) for g in opt.param_groups) == 6


def test_unfreezing_later_adds_a_group_that_follows_the_schedule(tiny_mlp):
    freeze(tiny_mlp, "0.*")
    opt = torch.optim.SGD(param_groups(tiny_mlp, 0.1), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 0.5**e)
    for _ in range(2):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.025)
    unfreeze(tiny_mlp, "0.*")
    add_param_groups_(opt, param_groups(tiny_mlp, 0.1, only=["0.weight", "0.bias"]), [sched])
    new = opt.param_groups[-1]
    assert new["lr"] == pytest.approx(0.025), "joins at the schedule's current phase"
    opt.step()
    sched.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.0125] * len(opt.param_groups))


def test_bad_rates_are_refused(tiny_mlp):
    with pytest.raises(ConfigError):
        param_groups(tiny_mlp, -1.0)
    with pytest.raises(ConfigError):
        param_groups(tiny_mlp, 1e-3, lr_decay=2.0)
