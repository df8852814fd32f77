import torch

from warmstart.cohort import fit_cohort
from warmstart.tabular.model import TabularMLP
from warmstart.train import fit

CARDS = {"a": 5, "b": 7, "c": 3}


def data(seed: int, n: int = 200):
    g = torch.Generator().manual_seed(seed)
    cat = torch.stack([torch.randint(0, c, (n,), generator=g) for c in CARDS.values()], 1)
    num = torch.randn(n, 2, generator=g)
    return cat, num, num[:, :1] - 0.3 * cat[:, :1].float() + 0.1 * torch.randn(n, 1, generator=g)


def model(seed: int) -> TabularMLP:
    torch.manual_seed(seed)
    return TabularMLP(CARDS, 2, (16, 16))


def test_a_cohort_equals_separate_runs_to_1e_5():
    seeds = [0, 1, 2, 3]
    sets = [data(10 + s) for s in seeds]
    separate = []
    for s, (cat, num, y) in zip(seeds, sets):
        m = model(s)
        fit(m, (cat, num), y, epochs=4, batch_size=32, lr=3e-3, seed=s)
        separate.append(m)
    together = fit_cohort([model(s) for s in seeds], sets, seeds=seeds, epochs=4, batch_size=32, lr=3e-3)
    for a, b in zip(separate, together):
        for (name, p), q in zip(a.named_parameters(), b.parameters()):
            torch.testing.assert_close(q, p, rtol=0, atol=1e-5, msg=name)
        assert not torch.equal(a.head.weight, model(0).head.weight)
