"""TabularMLP's hand-written backward pass against autograd and PyTorch's own modules."""

import pytest
import torch
from torch.nn import functional as F

from warmstart.strategies import parse_strategy
from warmstart.tabular import mlp_function
from warmstart.tabular.mlp_function import TabularMLPFunction
from warmstart.tabular.model import TabularMLP
from warmstart.train import fit

CARDS = {"a": 5, "b": 7, "c": 3}


def data(n: int = 40, seed: int = 0, cards=CARDS):
    g = torch.Generator().manual_seed(seed)
    cat = torch.stack([torch.randint(0, c, (n,), generator=g) for c in cards.values()], 1)
    num = torch.randn(n, 2, generator=g)
    return cat, num, num[:, :1] - 0.3 * cat[:, :1].float() + 0.1 * torch.randn(n, 1, generator=g)


def module_forward(m: TabularMLP, cat, num):
    """The textbook forward through nn.Embedding, nn.Sequential and nn.Linear."""
    parts = [emb(cat[:, j]) for j, emb in enumerate(m.embeddings.values())]
    return m.head(m.body(torch.cat([*parts, num], dim=1)))


@pytest.fixture(params=["fused", "per-column"])
def lookup(request, monkeypatch):
    if request.param == "per-column":
        monkeypatch.setattr(mlp_function, "FUSED_LOOKUP_MAX_ELEMENTS", 0)
        mlp_function._layouts.clear()
    yield request.param
    mlp_function._layouts.clear()


def params_of(m: TabularMLP):
    return [*m.tables(), *m.layers()]


def test_gradcheck_in_double_precision_for_every_input(lookup):
    torch.manual_seed(0)
    m = TabularMLP(CARDS, 2, (6, 5)).double()
    cat, num, _ = data(12)
    num = num.double().requires_grad_()
    assert torch.autograd.gradcheck(lambda x, *ps: TabularMLPFunction.apply(cat, x, 3, *ps), (num, *params_of(m)))


@pytest.mark.parametrize("trainable", [[0, 1, 2], [3, 4, 5, 6, 7, 8], [7, 8], [0, 7], [5]])
def test_gradcheck_when_only_some_inputs_need_gradients(trainable):
    torch.manual_seed(1)
    m = TabularMLP(CARDS, 2, (6, 5)).double()
    cat, num, _ = data(10)
    ps = [p.detach().clone().requires_grad_(i in trainable) for i, p in enumerate(params_of(m))]
    assert torch.autograd.gradcheck(lambda *q: TabularMLPFunction.apply(cat, num.double(), 3, *q), tuple(ps))


def test_mse_gradients_equal_autograd_through_pytorch_modules(lookup):
    torch.manual_seed(2)
    m = TabularMLP(CARDS, 2, (16, 8))
    cat, num, y = data(64)
    F.mse_loss(module_forward(m, cat, num), y).backward()
    expected = {n: p.grad.clone() for n, p in m.named_parameters()}
    m.zero_grad(set_to_none=True)
    loss = m.warmstart_mse_gradients(cat)(cat, num, y)
    with torch.no_grad():
        assert loss.item() == pytest.approx(F.mse_loss(module_forward(m, cat, num), y).item(), rel=1e-6)
    for n, p in m.named_parameters():
        torch.testing.assert_close(p.grad, expected[n], rtol=1e-5, atol=1e-7, msg=n)


def test_frozen_parameters_get_no_gradient_and_row_hooks_apply():
    torch.manual_seed(3)
    m = TabularMLP(CARDS, 2, (8,))
    m.body[0][0].weight.requires_grad_(False)
    m.embeddings["a"].weight.register_hook(lambda g: g * 0)
    cat, num, y = data(32)
    m.warmstart_mse_gradients(cat)(cat, num, y)
    assert m.body[0][0].weight.grad is None
    assert torch.count_nonzero(m.embeddings["a"].weight.grad) == 0
    assert torch.count_nonzero(m.embeddings["b"].weight.grad) > 0


def test_forward_hooks_switch_to_the_module_path():
    """Activation tracing (init-report, divergence diagnosis) relies on module hooks."""
    m = TabularMLP(CARDS, 2, (8,))
    seen = []
    m.body[0].register_forward_hook(lambda mod, i, o: seen.append(o.shape))
    cat, num, y = data(16)
    m(cat, num)
    assert seen == [torch.Size([16, 8])]
    assert m.warmstart_mse_gradients(cat) is None


def test_a_code_past_its_table_is_an_error_not_the_next_tables_row(lookup):
    m = TabularMLP(CARDS, 2, (8,))
    cat, num, _ = data(4)
    cat[1, 0] = 5  # column a has rows 0..4; row 5 of the concatenation is b's row 0
    with pytest.raises(IndexError):
        m(cat, num)
    with pytest.raises(IndexError):
        m.warmstart_mse_gradients(cat)
    cat[1, 0] = -1
    with pytest.raises(IndexError):
        m(cat, num)


@pytest.mark.parametrize("strategy", ["full", "freeze:1", "probe", "l2sp:0.5", "discriminative",
                                      parse_strategy("lp-ft", probe_epochs=2)])
def test_fit_without_autograd_matches_fit_through_modules(strategy):
    """A forward hook forces the autograd path through nn modules: same training to float tolerance."""
    cat, num, y = data(120, seed=4, cards={"a": 7, "b": 7, "c": 4})
    runs = []
    for hooked in (False, True):
        torch.manual_seed(5)
        m = TabularMLP(CARDS, 2, (16, 16))
        m.extend_embeddings_({"a": 7, "b": 7, "c": 4})
        if hooked:
            m.register_forward_hook(lambda mod, i, o: None)
        fit(m, (cat, num), y, strategy=strategy, epochs=4, batch_size=16, lr=3e-3, seed=1)
        runs.append(m)
    for (n, p), q in zip(runs[0].named_parameters(), runs[1].parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=n)


@pytest.mark.parametrize("cards,n_numeric", [({}, 3), ({"a": 5, "b": 4}, 0)])
def test_models_without_categorical_or_without_numeric_columns(cards, n_numeric):
    from warmstart.tabular.cohort import fit_cohort

    g = torch.Generator().manual_seed(6)
    cat = torch.stack([torch.randint(0, c, (50,), generator=g) for c in cards.values()], 1) if cards else \
        torch.zeros(50, 0, dtype=torch.long)
    num, y = torch.randn(50, n_numeric, generator=g), torch.randn(50, 1, generator=g)
    runs = []
    for hooked in (False, True):
        torch.manual_seed(7)
        m = TabularMLP(cards, n_numeric, (8,))
        if hooked:
            m.register_forward_hook(lambda mod, i, o: None)
        fit(m, (cat, num), y, epochs=3, batch_size=16, seed=1)
        runs.append(m)
    torch.manual_seed(7)
    together = [TabularMLP(cards, n_numeric, (8,))]
    fit_cohort(together, (cat, num), y, strategies=["full"], lrs=[1e-3], seeds=[1], epochs=3, batch_size=16)
    for p, q, r in zip(runs[0].parameters(), runs[1].parameters(), together[0].parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(r, q, rtol=1e-5, atol=1e-6)


def test_torch_func_transforms_take_the_module_path():
    from torch.func import functional_call, grad, vmap

    m = TabularMLP(CARDS, 2, (8,))
    cat, num, y = data(10)
    params = {k: v.detach() for k, v in m.named_parameters()}
    g = grad(lambda p: ((functional_call(m, p, (cat, num)) - y) ** 2).mean())(params)
    F.mse_loss(module_forward(m, cat, num), y).backward()
    for n, p in m.named_parameters():
        torch.testing.assert_close(g[n], p.grad, rtol=1e-5, atol=1e-7, msg=n)
    out = vmap(lambda x: functional_call(m, params, (cat, x)))(num.unsqueeze(0).repeat(3, 1, 1))
    assert out.shape == (3, 10, 1)


def test_a_second_derivative_is_refused_not_silently_wrong():
    m = TabularMLP(CARDS, 2, (8,))
    cat, num, y = data(10)
    (g,) = torch.autograd.grad(F.mse_loss(m(cat, num), y), [m.head.weight], create_graph=True)
    with pytest.raises(RuntimeError):
        g.sum().backward()
