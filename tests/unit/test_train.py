import copy

import pytest
import torch
from torch import nn

from warmstart import train as train_module
from warmstart.errors import TrainingDivergedError
from warmstart.init import init_
from warmstart.train import batch_size_for, fit


class BNNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU()),
            nn.Sequential(nn.Linear(16, 16), nn.ReLU()),
        )
        self.head = nn.Linear(16, 1)

    def forward(self, x):
        return self.head(self.body(x))


def test_frozen_layers_are_bit_identical_after_training(regression_data):
    torch.manual_seed(0)
    model = BNNet()
    model.train()
    model(regression_data[0])  # non-default BatchNorm statistics
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fit(model, *regression_data, strategy="freeze:1", epochs=5, lr=1e-2)
    after = model.state_dict()
    for k in before:
        if k.startswith("body.0."):
            assert torch.equal(after[k], before[k]), f"{k} moved"
        elif not k.endswith("num_batches_tracked"):
            assert not torch.equal(after[k], before[k]), f"{k} did not move"
    assert all(p.grad is None for n, p in model.named_parameters() if n.startswith("body.0."))


def test_training_reduces_the_loss_and_early_stopping_restores_the_best(regression_data, tiny_mlp):
    result = fit(tiny_mlp, *regression_data, epochs=200, lr=1e-2, val_fraction=0.25, patience=5)
    losses = [r["val_loss"] for r in result.history]
    assert losses[-1] < losses[0] / 3 or result.best_val_loss < losses[0] / 3
    assert result.best_val_loss == min(losses)
    assert result.stopped_early and result.epochs_run < 200


def test_same_seed_gives_the_same_weights(regression_data):
    def run():
        torch.manual_seed(0)
        m = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
        fit(m, *regression_data, epochs=5, seed=3)
        return m.state_dict()

    a, b = run(), run()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_lp_ft_trains_only_the_head_in_phase_one(regression_data, tiny_mlp):
    seen = []

    def on_epoch(row):
        seen.append((row["phase"], [n for n, p in tiny_mlp.named_parameters() if p.requires_grad]))

    body_before = tiny_mlp[0].weight.detach().clone()
    result = fit(tiny_mlp, *regression_data, strategy="lp-ft", epochs=6, on_epoch=on_epoch)
    from warmstart.strategies import parse_strategy

    result = fit(
        tiny_mlp, *regression_data,
        strategy=parse_strategy("lp-ft", probe_epochs=3), epochs=6, on_epoch=on_epoch,
    )
    probe = [t for p, t in seen[-6:] if p == "probe"]
    tune = [t for p, t in seen[-6:] if p == "fine-tune"]
    assert len(probe) == 3 and len(tune) == 3
    assert all(t == ["4.weight", "4.bias"] for t in probe)
    assert all(len(t) == 6 for t in tune)
    assert not torch.equal(tiny_mlp[0].weight, body_before)
    assert {k for k in result.history[-1] if k.startswith("lr_")} >= {"lr_4/no_decay", "lr_0/no_decay"}


def test_scratch_reinitializes_before_training(regression_data, tiny_mlp):
    with torch.no_grad():
        tiny_mlp[0].weight.fill_(5.0)
    fit(tiny_mlp, *regression_data, strategy="scratch", epochs=1, lr=1e-6)
    assert tiny_mlp[0].weight.abs().max() <= 1 / 8**0.5 + 1e-3


def test_exploding_loss_stops_naming_epoch_step_and_layer_and_keeps_finite_weights(regression_data):
    torch.manual_seed(0)
    net = nn.Sequential(*[m for _ in range(16) for m in (nn.Linear(64, 64), nn.ReLU())], nn.Linear(64, 1))
    init_(net, "uniform")
    X, y = regression_data
    with pytest.raises(TrainingDivergedError, match=r"epoch 1, step 1 \(first bad layer: \d+ \(explode activations\)"):
        fit(net, X.repeat(1, 8), y, epochs=5, lr=1e-3, batch_size=32)
    assert all(torch.isfinite(p).all() for p in net.parameters())


def test_on_a_gpu_the_loss_is_checked_once_per_epoch_naming_the_same_step(regression_data, tiny_mlp, monkeypatch):
    """Without a per-step read (no per-step sync on a GPU) the error names the same first bad
    step, and the weights go back to the start of that epoch."""
    X, y = regression_data
    errors = []
    for each_step in (True, False):
        monkeypatch.setattr(train_module, "reads_loss_each_step", lambda device, v=each_step: v)
        net = copy.deepcopy(tiny_mlp)
        start = copy.deepcopy(net.state_dict())
        with pytest.raises(TrainingDivergedError) as info:
            fit(net, X * 1e6, y, epochs=3, lr=1e6, batch_size=16, optimizer="sgd")
        errors.append(str(info.value).split(" (first")[0])
        if not each_step:
            assert all(torch.equal(p, start[n]) for n, p in net.named_parameters())
    assert errors[0] == errors[1] and "epoch 1, step" in errors[0]


def test_huge_learning_rate_diverges_cleanly(regression_data, tiny_mlp):
    with pytest.raises(TrainingDivergedError, match="Lower the learning rate"):
        fit(tiny_mlp, regression_data[0] * 1e6, regression_data[1], epochs=50, lr=1e6, optimizer="sgd")
    assert all(torch.isfinite(p).all() for p in tiny_mlp.parameters())


def test_l2sp_strategy_stays_closer_to_the_start(regression_data):
    def drift(strategy):
        torch.manual_seed(0)
        m = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
        start = [p.detach().clone() for p in m.parameters()]
        fit(m, *regression_data, strategy=strategy, epochs=20, lr=1e-2)
        return sum((p - s).pow(2).sum().item() for p, s in zip(m.parameters(), start))

    assert drift("l2sp:10") < 0.5 * drift("full")


def test_batch_size_grows_with_the_data_to_about_a_thousand_steps_per_epoch():
    assert [batch_size_for(n) for n in (30, 64_000, 100_000, 300_000, 1_000_000, 10**9)] == [64, 64, 128, 256, 1024,
                                                                                          1024]
