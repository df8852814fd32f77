"""Layer initialization: every ``torch.nn.init`` scheme by name, LSUV, and the init report.

PyTorch's own default for ``nn.Linear(fan_in, fan_out)`` (``reset_parameters``) is
``kaiming_uniform_(a=sqrt(5))``, i.e. weights ~ U(-1/sqrt(fan_in), +1/sqrt(fan_in)):
+-0.125 for 64 inputs. ``init_report`` shows each layer's observed range against that
bound and, given a batch, how the scale of activations evolves through the network.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import torch
from torch import nn

from .errors import ConfigError, PatternError, did_you_mean
from .names import matches

Batch = Union[torch.Tensor, Sequence[torch.Tensor], Mapping[str, torch.Tensor]]

# Schemes applied to a layer's weight tensor. Each is a torch.nn.init function (in place).
SCHEMES: dict[str, Callable[..., torch.Tensor]] = {
    "uniform": nn.init.uniform_,  # U(a, b), default U(0, 1)
    "normal": nn.init.normal_,  # N(mean, std^2), default N(0, 1)
    "trunc_normal": nn.init.trunc_normal_,  # N(mean, std^2) truncated to [a, b]
    "constant": nn.init.constant_,  # every value = val
    "zeros": nn.init.zeros_,
    "ones": nn.init.ones_,
    "eye": nn.init.eye_,
    "dirac": nn.init.dirac_,
    "xavier_uniform": nn.init.xavier_uniform_,  # U(-a, a), a = gain*sqrt(6/(fan_in+fan_out))
    "xavier_normal": nn.init.xavier_normal_,  # N(0, gain^2 * 2/(fan_in+fan_out))
    "kaiming_uniform": nn.init.kaiming_uniform_,  # U(-b, b), b = gain*sqrt(3/fan_mode)
    "kaiming_normal": nn.init.kaiming_normal_,  # N(0, gain^2/fan_mode)
    "orthogonal": nn.init.orthogonal_,  # (semi-)orthogonal matrix times gain
    "sparse": nn.init.sparse_,  # N(0, std^2) with a fraction of zeros per column
}
# Schemes that are not a single tensor function: PyTorch's own default and data-driven LSUV.
SPECIAL = ("default", "lsuv")
EXPLODE_STD = 1e3
VANISH_STD = 1e-3


def scheme_names() -> list[str]:
    return sorted([*SCHEMES, *SPECIAL])


def check_scheme(name: str) -> str:
    """Validate a scheme name at the edge; return it."""
    if name not in SCHEMES and name not in SPECIAL:
        raise ConfigError(
            f"unknown init scheme '{name}'{did_you_mean(name, scheme_names())}; "
            f"known schemes: {', '.join(scheme_names())}"
        )
    return name


@dataclass(frozen=True)
class InitRule:
    """Initialize the layers matched by ``target`` (a module-name glob or a module type)."""

    target: str | type[nn.Module]
    scheme: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    # What happens to biases: "zeros" (the usual choice with explicit schemes) or "keep".
    bias: str = "zeros"


RuleLike = Union[InitRule, tuple, str]


def _as_rules(rules: RuleLike | Sequence[RuleLike] | Mapping[Any, Any]) -> list[InitRule]:
    """Accept ``InitRule``s, ``{target: scheme | (scheme, kwargs)}`` or one scheme name for all."""
    if isinstance(rules, (InitRule, str)):
        rules = [rules]
    if isinstance(rules, Mapping):
        rules = [(t, *(s if isinstance(s, tuple) else (s,))) for t, s in rules.items()]
    out = []
    for rule in rules:
        if isinstance(rule, str):
            rule = InitRule("*", rule)
        elif isinstance(rule, tuple):
            rule = InitRule(*rule)
        check_scheme(rule.scheme)
        if rule.bias not in ("zeros", "keep"):
            raise ConfigError(f"bias policy '{rule.bias}' is not 'zeros' or 'keep'")
        out.append(rule)
    return out


def weighted_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules holding their own weight matrix (Linear, Conv, Embedding, ...), in order."""
    return [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.dim() >= 2
    ]


def _matched(rule: InitRule, layers: list[tuple[str, nn.Module]]) -> list[tuple[str, nn.Module]]:
    if isinstance(rule.target, str):
        hit = [(n, m) for n, m in layers if matches(n, rule.target) or matches(n + ".weight", rule.target)]
    else:
        hit = [(n, m) for n, m in layers if isinstance(m, rule.target)]
    if not hit:
        names = [n for n, _ in layers]
        raise PatternError(
            f"init target '{getattr(rule.target, '__name__', rule.target)}' matches no layer"
            f"{did_you_mean(str(rule.target), names)}; layers are: {', '.join(names)}"
        )
    return hit


@torch.no_grad()
def init_(
    model: nn.Module,
    rules: RuleLike | Sequence[RuleLike] | Mapping[Any, Any],
    *,
    batch: Batch | None = None,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """Initialize ``model``'s layers in place by rules; later rules win; returns the model.

    ``init_(model, "xavier_uniform")`` re-initializes every layer;
    ``init_(model, {"body.*": ("kaiming_normal", {"nonlinearity": "relu"}), nn.Linear: "default"})``
    picks layers by name glob or by type. ``lsuv`` needs ``batch``.
    """
    layers = weighted_layers(model)
    for rule in _as_rules(rules):
        chosen = _matched(rule, layers)
        if rule.scheme == "lsuv":
            if batch is None:
                raise ConfigError("the 'lsuv' scheme is data-dependent: pass batch=<a batch of inputs>")
            lsuv_(model, batch, layers=[m for _, m in chosen], generator=generator, **dict(rule.kwargs))
            continue
        for _, module in chosen:
            if rule.scheme == "default":
                module.reset_parameters()
                continue
            fn = SCHEMES[rule.scheme]
            kwargs = dict(rule.kwargs)
            if generator is not None and "generator" in inspect.signature(fn).parameters:
                kwargs["generator"] = generator
            try:
                fn(module.weight, **kwargs)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"init scheme '{rule.scheme}' with {kwargs}: {exc}") from None
            bias = getattr(module, "bias", None)
            if rule.bias == "zeros" and isinstance(bias, torch.Tensor):
                bias.zero_()
    return model


def forward(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Call the model on a batch given as a tensor, a tuple of tensors or keyword tensors."""
    if isinstance(batch, torch.Tensor):
        return model(batch)
    if isinstance(batch, Mapping):
        return model(**batch)
    return model(*batch)


@torch.no_grad()
def trace_activations(model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
    """Outputs of each weighted layer on ``batch``, keyed by layer name, in call order."""
    outputs: dict[str, torch.Tensor] = {}
    handles = []
    for name, module in weighted_layers(model):
        def hook(_m, _inp, out, name=name):
            if isinstance(out, torch.Tensor):
                outputs.setdefault(name, out.detach())
        handles.append(module.register_forward_hook(hook))
    was_training = model.training
    model.train(False)
    try:
        forward(model, batch)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return outputs


@torch.no_grad()
def lsuv_(
    model: nn.Module,
    batch: Batch,
    *,
    layers: Sequence[nn.Module] | None = None,
    tol: float = 0.05,
    max_iter: int = 10,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """Layer-sequential unit-variance init (Mishkin & Matas 2016, "All you need is a good init").

    Each layer's weight starts (semi-)orthogonal; then, layer by layer from the input, it is
    scaled by ``1/std(output)`` until ``|Var(output) - 1| < tol`` on ``batch``.
    Embedding tables are left alone (a lookup has no fan-in to normalize).
    """
    by_id = {id(m): n for n, m in weighted_layers(model)}
    targets = [m for m in (layers or [m for _, m in weighted_layers(model)]) if not isinstance(m, nn.Embedding)]
    order = list(trace_activations(model, batch))  # call order, not registration order
    targets.sort(key=lambda m: order.index(by_id[id(m)]) if by_id[id(m)] in order else len(order))
    for module in targets:
        nn.init.orthogonal_(module.weight, generator=generator)
        if isinstance(getattr(module, "bias", None), torch.Tensor):
            module.bias.zero_()
        for _ in range(max_iter):
            out = trace_activations(model, batch).get(by_id[id(module)])
            if out is None:
                break
            std = out.float().std().item()
            if not math.isfinite(std) or std == 0.0 or abs(std**2 - 1.0) < tol:
                break
            module.weight.div_(std)
    return model


@dataclass(frozen=True)
class LayerInit:
    name: str
    kind: str
    fan_in: int
    fan_out: int
    bound: float | None  # PyTorch's default bound 1/sqrt(fan_in) for Linear/Conv, else None
    weight_min: float
    weight_max: float
    weight_std: float
    act_mean: float | None = None
    act_std: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class InitReport:
    layers: list[LayerInit]
    problem_layer: str | None = None  # first layer whose activations are bad
    problem: str | None = None  # "non-finite", "explode" or "vanish"

    def as_dict(self) -> dict[str, Any]:
        return {
            "layers": [layer.as_dict() for layer in self.layers],
            "problem_layer": self.problem_layer,
            "problem": self.problem,
        }

    def __str__(self) -> str:
        head = f"{'layer':<16}{'fan_in':>7}{'bound':>9}{'w_min':>9}{'w_max':>9}{'w_std':>9}{'act_mean':>11}{'act_std':>11}"
        rows = [head]
        for l in self.layers:
            bound = f"{l.bound:9.4f}" if l.bound is not None else f"{'-':>9}"
            act = (
                f"{l.act_mean:11.4g}{l.act_std:11.4g}" if l.act_std is not None else f"{'-':>11}{'-':>11}"
            )
            rows.append(
                f"{l.name:<16}{l.fan_in:>7}{bound}{l.weight_min:9.4f}{l.weight_max:9.4f}{l.weight_std:9.4f}{act}"
            )
        if self.problem:
            rows.append(f"activations {self.problem} first at layer '{self.problem_layer}'")
        return "\n".join(rows)


def default_bound(module: nn.Module) -> float | None:
    """Bound of PyTorch's default init U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for this layer."""
    if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
        fan_in, _ = nn.init._calculate_fan_in_and_fan_out(module.weight)
        return 1.0 / math.sqrt(fan_in) if fan_in else None
    return None


def activation_problem(std: float) -> str | None:
    """Classify an activation scale: non-finite, exploding (std > 1e3), vanishing (std < 1e-3)."""
    if not math.isfinite(std):
        return "non-finite"
    if std > EXPLODE_STD:
        return "explode"
    if std < VANISH_STD:
        return "vanish"
    return None


@torch.no_grad()
def init_report(model: nn.Module, batch: Batch | None = None) -> InitReport:
    """Per layer: fan_in, default bound, observed weight range; with a batch, activation scale.

    Activations are each layer's own output (before any following nonlinearity).
    """
    acts = trace_activations(model, batch) if batch is not None else {}
    layers = []
    for name, module in weighted_layers(model):
        w = module.weight.detach().float()
        fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(w)
        out = acts.get(name)
        out = out.float() if out is not None else None
        layers.append(
            LayerInit(
                name=name,
                kind=type(module).__name__,
                fan_in=fan_in,
                fan_out=fan_out,
                bound=default_bound(module),
                weight_min=w.min().item(),
                weight_max=w.max().item(),
                weight_std=w.std().item() if w.numel() > 1 else 0.0,
                act_mean=out.mean().item() if out is not None else None,
                act_std=(out.std().item() if out.numel() > 1 else 0.0) if out is not None else None,
            )
        )
    if acts:  # activation order is call order
        by_name = {layer.name: layer for layer in layers}
        for name in acts:
            layer = by_name[name]
            kind = activation_problem(layer.act_std) if math.isfinite(layer.act_mean) else "non-finite"
            if kind:
                return InitReport(layers, name, kind)
    return InitReport(layers)
