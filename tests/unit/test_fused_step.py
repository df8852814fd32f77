"""FusedStep calls the kernel opt.step() calls: bit-identical weights and state."""

import pytest
import torch

from warmstart.fused_step import FusedStep
from warmstart.param_groups import param_groups


def net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))


@pytest.mark.parametrize("cls,kwargs", [(torch.optim.Adam, {}), (torch.optim.AdamW, {"weight_decay": 0.01}),
                                        (torch.optim.Adam, {"weight_decay": 0.1, "betas": (0.8, 0.99)})])
def test_weights_and_state_are_bit_identical_to_opt_step(cls, kwargs):
    x, y = torch.randn(64, 5), torch.randn(64, 1)
    a, b = net(0), net(0)
    opt_a = cls(param_groups(a, 1e-2, lr_decay=0.5, weight_decay=kwargs.pop("weight_decay", 0.0)), fused=True,
                **kwargs)
    opt_b = cls(param_groups(b, 1e-2, lr_decay=0.5, weight_decay=opt_a.param_groups[0]["weight_decay"]),
                fused=True, **kwargs)
    stepper = FusedStep(opt_b)
    for i in range(20):
        for model, step, zero in ((a, opt_a.step, opt_a.zero_grad), (b, stepper.step, stepper.zero_grad)):
            zero()
            torch.nn.functional.mse_loss(model(x[i:i + 32]), y[i:i + 32]).backward()
            step()
        if i == 10:  # a schedule changes the rate between steps
            for g in (*opt_a.param_groups, *opt_b.param_groups):
                g["lr"] *= 0.5
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(opt_a.state[p][key], opt_b.state[q][key])
    assert stepper._lists is not None, "the direct path was used"


def test_falls_back_to_opt_step_when_it_cannot_reproduce_it():
    model = net(1)
    for opt in (torch.optim.Adam(model.parameters(), amsgrad=True), torch.optim.SGD(model.parameters(), lr=0.1),
                torch.optim.Adam(model.parameters())):  # not fused
        stepper = FusedStep(opt)
        before = [p.detach().clone() for p in model.parameters()]
        torch.nn.functional.mse_loss(model(torch.randn(4, 5)), torch.randn(4, 1)).backward()
        stepper.step()
        stepper.step()
        assert stepper._lists is None
        assert not all(torch.equal(p, q) for p, q in zip(before, model.parameters()))
        stepper.zero_grad()
        assert all(p.grad is None for p in model.parameters())
