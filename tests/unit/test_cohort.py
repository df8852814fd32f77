import pytest
import torch

from warmstart.tabular.cohort import fit_cohort
from warmstart.strategies import parse_strategy
from warmstart.tabular.model import TabularMLP
from warmstart.train import fit

CARDS = {"a": 5, "b": 7, "c": 3}
GROWN = {"a": 7, "b": 7, "c": 4}  # after the target's new categories were appended
STRATEGIES = ["scratch", "full", "freeze:1", "probe", parse_strategy("lp-ft", probe_epochs=3), "l2sp:0.5",
              "discriminative"]


def data(seed: int, n: int = 200, cards: dict[str, int] = GROWN):
    g = torch.Generator().manual_seed(seed)
    cat = torch.stack([torch.randint(0, c, (n,), generator=g) for c in cards.values()], 1)
    num = torch.randn(n, 2, generator=g)
    return (cat, num), num[:, :1] - 0.3 * cat[:, :1].float() + 0.1 * torch.randn(n, 1, generator=g)


def model(seed: int, grown: bool = True) -> TabularMLP:
    torch.manual_seed(seed)
    m = TabularMLP(CARDS, 2, (16, 16))
    if grown:  # a transferred model: tables grew, so row freezes apply to the new rows
        m.extend_embeddings_(GROWN)
    return m


@pytest.mark.parametrize("epochs,tol", [(5, 1e-5), (40, 2e-3)])
def test_a_cohort_of_strategies_equals_separate_fits(epochs, tol):
    X, y = data(1)
    Xv, yv = data(2, 60)
    kwargs = dict(epochs=epochs, batch_size=32, val=(Xv, yv), patience=3)
    lrs = [3e-3, 1e-3, 3e-3, 3e-3, 2e-3, 3e-3, 3e-3]
    seeds = [0, 0, 0, 1, 0, 2, 0]
    separate, results = [], []
    for s, lr, seed in zip(STRATEGIES, lrs, seeds):
        m = model(0)
        results.append(fit(m, X, y, strategy=s, lr=lr, seed=seed, **kwargs))
        separate.append(m)
    together = [model(0) for _ in STRATEGIES]
    cohort = fit_cohort(together, X, y, strategies=STRATEGIES, lrs=lrs, seeds=seeds, **kwargs)
    for a, b, ra, rb, s in zip(separate, together, results, cohort, STRATEGIES):
        for (name, p), q in zip(a.named_parameters(), b.parameters()):
            # bmm and mm sum in different orders: ~1e-7 per step, which 280 Adam steps at a
            # large learning rate grow to ~1e-3 while the validation losses still agree to 1e-5.
            torch.testing.assert_close(q, p, rtol=tol, atol=tol, msg=f"{s}: {name}")
        assert (ra.best_epoch, ra.epochs_run, ra.stopped_early) == (rb.best_epoch, rb.epochs_run, rb.stopped_early), s
    for ra, rb in zip(results, cohort):
        for ha, hb in zip(ra.history, rb.history):
            assert ha["val_loss"] == pytest.approx(hb["val_loss"], rel=1e-4)
    if epochs == 40:
        assert len({r.epochs_run for r in cohort}) > 1, "members stopped at different epochs"
    start = model(0)
    frozen = together[STRATEGIES.index("freeze:1")]
    assert torch.equal(frozen.body[0][0].weight, start.body[0][0].weight)
    assert torch.equal(frozen.embeddings["a"].weight[:5], start.embeddings["a"].weight[:5])
    assert not torch.equal(frozen.embeddings["a"].weight[5:], start.embeddings["a"].weight[5:])


def test_a_cohort_without_validation_runs_every_epoch():
    X, y = data(3, cards=CARDS)
    seeds = [0, 1, 2]
    separate = []
    for seed in seeds:
        m = model(seed, grown=False)
        fit(m, X, y, epochs=3, batch_size=64, lr=1e-3, seed=seed)
        separate.append(m)
    together = [model(seed, grown=False) for seed in seeds]
    fit_cohort(together, X, y, strategies=["full"] * 3, lrs=[1e-3] * 3, seeds=seeds, epochs=3, batch_size=64)
    for a, b in zip(separate, together):
        for p, q in zip(a.parameters(), b.parameters()):
            torch.testing.assert_close(q, p, rtol=0, atol=1e-5)


@pytest.mark.parametrize("epochs,tol,lrs", [(4, 1e-5, [3e-3, 2e-3, 3e-3, 3e-3]), (30, 2e-3, [3e-2, 2e-2, 1e-2, 3e-2])])
def test_members_with_their_own_rows_and_validation_sets_equal_separate_fits(epochs, tol, lrs):
    """k-fold style: each member trains on its own subset (sizes 150, 133, 97, 64) and
    early-stops on its own validation rows."""
    (cat, num), y = data(7)
    shuffled = torch.randperm(200, generator=torch.Generator().manual_seed(1))
    subsets = [torch.arange(0, 150), torch.arange(40, 173), shuffled[:97], torch.arange(136, 200)]
    vals = [data(10 + k, 30 + 7 * k) for k in range(4)]
    strategies = ["full", parse_strategy("lp-ft", probe_epochs=2), "freeze:1", "l2sp:0.5"]
    seeds = [0, 1, 2, 3]
    kwargs = dict(epochs=epochs, batch_size=32, patience=3)
    separate, results = [], []
    for s, lr, seed, rows, v in zip(strategies, lrs, seeds, subsets, vals):
        m = model(0)
        results.append(fit(m, (cat[rows], num[rows]), y[rows], strategy=s, lr=lr, seed=seed, val=v, **kwargs))
        separate.append(m)
    together = [model(0) for _ in strategies]
    cohort = fit_cohort(together, (cat, num), y, strategies=strategies, lrs=lrs, seeds=seeds, subsets=subsets,
                        vals=vals, **kwargs)
    for a, b, ra, rb, s in zip(separate, together, results, cohort, strategies):
        for (name, p), q in zip(a.named_parameters(), b.parameters()):
            torch.testing.assert_close(q, p, rtol=tol, atol=tol, msg=f"{s}: {name}")
        assert (ra.best_epoch, ra.epochs_run, ra.stopped_early) == (rb.best_epoch, rb.epochs_run, rb.stopped_early)
        for ha, hb in zip(ra.history, rb.history):
            assert ha["val_loss"] == pytest.approx(hb["val_loss"], rel=1e-4)
    if epochs == 30:
        assert len({r.epochs_run for r in cohort}) > 1, "members stopped at different epochs"


def test_a_last_batch_of_one_row_trains_like_separate_fits():
    X, y = data(4, n=65, cards=CARDS)
    separate = model(0, grown=False)
    fit(separate, X, y, epochs=2, batch_size=64, lr=1e-3, seed=3)
    together = [model(0, grown=False), model(1, grown=False)]
    fit_cohort(together, X, y, strategies=["full", "probe"], lrs=[1e-3] * 2, seeds=[3, 3], epochs=2, batch_size=64)
    for p, q in zip(separate.parameters(), together[0].parameters()):
        torch.testing.assert_close(q, p, rtol=0, atol=1e-5)


def test_a_finished_member_stops_costing_compute(monkeypatch):
    """Members leave the stack when they stop: later steps run on fewer stacked models."""
    from warmstart.tabular import cohort

    widths = []
    forward = cohort._CohortMLP.forward
    monkeypatch.setattr(cohort._CohortMLP, "forward",
                        lambda self, codes, numeric: widths.append(codes.shape[0]) or forward(self, codes, numeric))
    X, y = data(5, n=64, cards=CARDS)
    models = [model(0, grown=False) for _ in range(3)]
    results = fit_cohort(models, X, y, strategies=["probe", "full", "full"], lrs=[1e-3, 1e-3, 3e-2], seeds=[0, 1, 2],
                         epochs=30, batch_size=32, val=data(6, 40, cards=CARDS), patience=2)
    runs = [r.epochs_run for r in results]
    assert len(set(runs)) > 1, "members stopped at different epochs"
    # Per epoch: two training steps on the live members, then one validation pass.
    expected = [n for e in range(1, max(runs) + 1) for n in [sum(r >= e for r in runs)] * 3]
    assert widths == expected


def test_members_of_different_architectures_are_refused():
    from warmstart.errors import ConfigError

    X, y = data(0, cards=CARDS)
    with pytest.raises(ConfigError, match="one architecture"):
        fit_cohort([model(0), model(0, grown=False)], X, y, strategies=["full"] * 2, lrs=[1e-3] * 2, seeds=[0, 0])


def test_bad_subsets_and_validation_sets_are_refused_before_anything_changes():
    from warmstart.errors import ConfigError

    X, y = data(8, n=40, cards=CARDS)
    models = [model(0, grown=False), model(1, grown=False)]
    before = [[p.detach().clone() for p in m.parameters()] for m in models]
    bad = [dict(subsets=[torch.arange(10), torch.arange(35, 41)]), dict(subsets=[torch.arange(10)]),
           dict(subsets=[torch.arange(10), torch.arange(0)]), dict(vals=[data(9, 10, cards=CARDS)]),
           dict(val=data(9, 10, cards=CARDS), vals=[data(9, 10, cards=CARDS)] * 2)]
    for kwargs in bad:
        with pytest.raises(ConfigError):
            fit_cohort(models, X, y, strategies=["scratch", "full"], lrs=[1e-3] * 2, seeds=[0, 1], epochs=1, **kwargs)
    for m, old in zip(models, before):
        assert all(torch.equal(p, q) for p, q in zip(m.parameters(), old)), "scratch re-initialized anyway"
