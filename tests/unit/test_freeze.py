import pytest
import torch
from torch import nn

from warmstart.errors import ConfigError, PatternError
from warmstart.freeze import (
    freeze,
    freeze_rows_,
    restore_frozen_rows_,
    train_mode_,
    trainable_map,
    unfreeze,
)
from warmstart.names import blocks


class BNNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU()),
            nn.Sequential(nn.Linear(16, 16), nn.BatchNorm1d(16), nn.ReLU()),
        )
        self.head = nn.Linear(16, 1)

    def forward(self, x):
        return self.head(self.body(x))


def test_freeze_by_pattern_sets_requires_grad(tiny_mlp):
    names = freeze(tiny_mlp, "0.*")
    assert names == ["0.weight", "0.bias"]
    assert not tiny_mlp[0].weight.requires_grad and tiny_mlp[2].weight.requires_grad
    unfreeze(tiny_mlp, "0.weight")
    assert tiny_mlp[0].weight.requires_grad and not tiny_mlp[0].bias.requires_grad


def test_pattern_matching_nothing_lists_the_names(tiny_mlp):
    with pytest.raises(PatternError, match=r"0\.weight, 0\.bias, 2\.weight"):
        freeze(tiny_mlp, "body.*")


def test_blocks_of_nested_model_split_sequential_children():
    assert blocks(BNNet()) == [("body.0",), ("body.1",), ("head",)]


def test_freeze_first_k_blocks():
    net = BNNet()
    frozen = freeze(net, first=1)
    assert frozen == ["body.0.0.weight", "body.0.0.bias", "body.0.1.weight", "body.0.1.bias"]
    with pytest.raises(ConfigError, match="3 blocks"):
        freeze(net, first=4)


def test_frozen_batchnorm_stays_in_eval_mode_and_keeps_its_statistics(regression_data):
    torch.manual_seed(0)
    net = BNNet()
    X, y = regression_data
    net.train()
    net(X)  # give the running stats non-default values
    freeze(net, "body.0.*")
    train_mode_(net)
    assert not net.body[0][1].training and net.body[1][1].training
    frozen_bn = {k: v.clone() for k, v in net.body[0][1].state_dict().items()}
    live_bn = net.body[1][1].running_mean.clone()
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    for _ in range(3):
        train_mode_(net)
        loss = nn.functional.mse_loss(net(X), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for k, v in net.body[0][1].state_dict().items():
        assert torch.equal(v, frozen_bn[k]), k
    assert not torch.equal(net.body[1][1].running_mean, live_bn)


def test_frozen_rows_do_not_move_even_under_weight_decay():
    torch.manual_seed(0)
    emb = nn.Embedding(6, 3)
    before = emb.weight.detach().clone()
    freeze_rows_(emb.weight, torch.tensor([0, 1, 2, 3]))
    opt = torch.optim.AdamW(emb.parameters(), lr=0.1, weight_decay=0.5)
    for _ in range(5):
        loss = emb(torch.arange(6)).pow(2).sum()
        opt.zero_grad()
        loss.backward()
        assert torch.count_nonzero(emb.weight.grad[:4]) == 0
        opt.step()
        restore_frozen_rows_(emb)
    assert torch.equal(emb.weight[:4], before[:4])
    assert not torch.equal(emb.weight[4:], before[4:])
    assert trainable_map(emb).as_dict() == {"weight": "rows 2/6"}


def test_trainable_map_counts(tiny_mlp):
    freeze(tiny_mlp, "0.*")
    table = trainable_map(tiny_mlp)
    assert table.total_count == sum(p.numel() for p in tiny_mlp.parameters())
    assert table.trainable_count == table.total_count - (8 * 16 + 16)
    assert "0.weight" in str(table) and "no" in str(table)
