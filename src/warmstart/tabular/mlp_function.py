"""TabularMLP's forward and backward pass written out: one autograd node per call.

A batch-64 step of the survey's MLP takes ~170 us of kernels but ~410 us through
autograd, whose per-node bookkeeping (about 25 nodes: lookups, concatenation, three
Linear layers, two ReLUs, their transposes) costs more than the arithmetic. This module
computes the same gradients by hand. With x_0 = [E(c), u] (embeddings of the codes c,
numeric columns u), a_i = h_{i-1} W_i^T + b_i, h_i = relu(a_i), out = h_n W^T + b and
g = dL/dout, going back from the head:

    dL/dW = g^T h_n,  dL/db = sum_rows g,  g_n = (g W) * [h_n > 0]
    dL/dW_i = g_i^T h_{i-1},  dL/db_i = sum_rows g_i,  g_{i-1} = (g_i W_i) * [h_{i-1} > 0]
    dL/dx_0 = g_1 W_1, and each table gets its rows' share of dL/dE(c).

Gradients are computed only for inputs that need them (frozen blocks need none), and the
pass back stops at the first layer nothing before it needs. ``torch.autograd.gradcheck``
checks it against autograd in double precision (``tests/unit/test_mlp_function.py``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

# Tables up to this many elements in all are looked up in one gather from their
# concatenation; larger ones column by column (the concatenation is copied every call).
FUSED_LOOKUP_MAX_ELEMENTS = 1 << 18


class Layout:
    """Where each output column of the concatenated embeddings comes from.

    Output column d belongs to table j(d), width w(d), column e(d) of that table; with the
    tables flattened and concatenated (table j starting at s_j), the value for codes c is
    ``flat[s_j + c[:, j] * w + e]``: one gather for all columns, one ``index_add`` back.
    """

    def __init__(self, tables: list[torch.Tensor], device: torch.device) -> None:
        self.shapes = [tuple(t.shape) for t in tables]
        self.device = device
        column, width, base = [], [], []
        start = 0
        for j, (rows, cols) in enumerate(self.shapes):
            column += [j] * cols
            width += [cols] * cols
            base += [start + e for e in range(cols)]
            start += rows * cols
        self.numel = start
        self.numels = [r * c for r, c in self.shapes]
        self.width_total = sum(c for _, c in self.shapes)
        self.fused = start <= FUSED_LOOKUP_MAX_ELEMENTS
        self.column = torch.tensor(column, dtype=torch.long, device=device)
        self.width = torch.tensor(width, dtype=torch.long, device=device)
        self.base = torch.tensor(base, dtype=torch.long, device=device)
        rows = torch.tensor([r for r, _ in self.shapes], dtype=torch.float32, device=device)
        self.mid, self.half = (rows - 1) / 2, rows / 2

    def check(self, codes: torch.Tensor) -> None:
        """Codes must index their own table: |c - (rows-1)/2| < rows/2, i.e. 0 <= c < rows."""
        if not ((codes - self.mid).abs_() < self.half).all():
            sizes = [r for r, _ in self.shapes]
            raise IndexError(f"category codes out of range: column j's codes must lie in 0 .. rows_j - 1; "
                             f"rows per column: {sizes}")

    def positions(self, codes: torch.Tensor) -> torch.Tensor:
        """[B, output columns] positions in the flattened tables."""
        return torch.addcmul(self.base, codes.index_select(1, self.column), self.width)


_layouts: dict[tuple, Layout] = {}


def layout_for(tables: list[torch.Tensor], device: torch.device) -> Layout:
    """The (cached) layout of tables of these shapes on this device."""
    key = (*(t.shape for t in tables), device)
    found = _layouts.get(key)
    if found is None:
        if len(_layouts) >= 64:
            _layouts.clear()
        found = _layouts[key] = Layout(tables, device)
    return found


def _flat(tables: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """The tables flattened and concatenated (empty when there are no categorical columns)."""
    return torch.cat([t.reshape(-1) for t in tables]) if tables else torch.zeros(0, device=device)


def embedding_lookup(codes: torch.Tensor, tables: list[torch.Tensor],
                     check: bool = True) -> tuple[torch.Tensor, torch.Tensor, Layout]:
    """Concatenated embeddings [B, sum of widths] of codes [B, columns] (autograd-tracked),
    what the backward pass needs to route gradients back (positions, or the codes for
    per-column lookups), and the layout. ``check=False`` skips the code range check."""
    layout = layout_for(tables, codes.device)
    if not layout.fused:
        return torch.cat([F.embedding(codes[:, j], t) for j, t in enumerate(tables)], dim=1), codes, layout
    if check:
        layout.check(codes)
    positions = layout.positions(codes)
    return _flat(tables, codes.device).take(positions), positions, layout


def embed(codes: torch.Tensor, tables: list[torch.Tensor]) -> torch.Tensor:
    """Concatenated embeddings [B, sum of widths] of codes [B, columns] (autograd-tracked)."""
    return embedding_lookup(codes, tables)[0]


def forward_pass(codes: torch.Tensor, numeric: torch.Tensor, tables: list[torch.Tensor], layers: list[torch.Tensor],
                 check: bool = True) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], Layout]:
    """Output [B, 1], plus what the backward pass needs: the lookup positions (or codes),
    the input of every Linear layer and the layout. ``layers`` = W_1, b_1, ..., W, b.
    ``check=False`` skips the code range check (the caller checked these rows already)."""
    emb, where, layout = embedding_lookup(codes, tables, check)
    h = torch.cat([emb, numeric], dim=1)
    hidden = [h]
    for i in range(0, len(layers) - 2, 2):
        h = torch.addmm(layers[i + 1], h, layers[i].t()).relu_()
        hidden.append(h)
    return torch.addmm(layers[-1], h, layers[-2].t()), where, hidden, layout


def backward_pass(grad_out: torch.Tensor, lookup: torch.Tensor, hidden: list[torch.Tensor],
                  tables: list[torch.Tensor], layers: list[torch.Tensor], layout: Layout, need_numeric: bool,
                  need: list[bool]) -> tuple[torch.Tensor | None, list[torch.Tensor | None]]:
    """Gradients for the numeric input and for every table and layer tensor with ``need``."""
    n_tables = len(tables)
    need_tables, need_layers = need[:n_tables], need[n_tables:]
    need_input = any(need_tables) or need_numeric
    lowest = next((i // 2 for i, n in enumerate(need_layers) if n), len(need_layers))  # first layer to train
    grads: list[torch.Tensor | None] = [None] * len(need)
    g, grad_x0 = grad_out, None
    for i in range(len(layers) // 2 - 1, -1, -1):
        if need_layers[2 * i]:
            grads[n_tables + 2 * i] = g.t() @ hidden[i]
        if need_layers[2 * i + 1]:
            grads[n_tables + 2 * i + 1] = g.sum(0)
        if i == 0:
            grad_x0 = g if need_input else None
        elif need_input or lowest < i:
            g = torch.ops.aten.threshold_backward(g @ layers[2 * i], hidden[i], 0)
        else:
            break
    if grad_x0 is None:
        return None, grads
    # g_1 W_1 split by columns of W_1: embedding part and numeric part, each contiguous.
    width = layout.width_total
    grad_numeric = grad_x0 @ layers[0][:, width:] if need_numeric else None
    if any(need_tables):
        grad_emb = grad_x0 @ layers[0][:, :width]
        if layout.fused:
            flat = grad_x0.new_zeros(layout.numel).index_add_(0, lookup.reshape(-1), grad_emb.reshape(-1))
            for j, piece in enumerate(flat.split(layout.numels)):
                if need_tables[j]:
                    grads[j] = piece.view(layout.shapes[j])
        else:
            col = 0
            for j, t in enumerate(tables):
                if need_tables[j]:
                    grads[j] = torch.zeros_like(t).index_add_(0, lookup[:, j], grad_emb[:, col : col + t.shape[1]])
                col += t.shape[1]
    return grad_numeric, grads


class TabularMLPFunction(torch.autograd.Function):
    """``apply(codes, numeric, n_tables, *tables, W_1, b_1, ..., W, b)`` -> [B, 1]."""

    @staticmethod
    def forward(ctx: Any, codes: torch.Tensor, numeric: torch.Tensor, n_tables: int,
                *params: torch.Tensor) -> torch.Tensor:
        out, lookup, hidden, layout = forward_pass(codes, numeric, list(params[:n_tables]), list(params[n_tables:]))
        ctx.n_tables, ctx.n_hidden, ctx.layout = n_tables, len(hidden), layout
        ctx.save_for_backward(lookup, *hidden, *params)
        return out

    @staticmethod
    @once_differentiable  # a second derivative (create_graph=True) is an error, not a silent zero
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        saved = ctx.saved_tensors
        lookup, hidden, params = saved[0], list(saved[1 : 1 + ctx.n_hidden]), saved[1 + ctx.n_hidden :]
        grad_numeric, grads = backward_pass(grad_out, lookup, hidden, list(params[: ctx.n_tables]),
                                            list(params[ctx.n_tables :]), ctx.layout, ctx.needs_input_grad[1],
                                            list(ctx.needs_input_grad[3:]))
        return (None, grad_numeric, None, *grads)


class MSEGradients:
    """``(codes, numeric, y) -> loss``: the mean squared error, with every trainable
    parameter's ``.grad`` set to its gradient.

    The same numbers as ``mse_loss(TabularMLPFunction.apply(...), y).backward()`` on
    cleared gradients, without autograd: dL/dout = 2 (out - y) / B. Which parameters train
    and their gradient hooks (``register_hook``, as ``freeze_rows_`` uses) are read once
    here, so make a new one when they change; hooks are applied as autograd would. The
    codes of ``rows`` are range-checked once here instead of on every batch.
    """

    def __init__(self, tables: list[torch.Tensor], layers: list[torch.Tensor], rows: torch.Tensor) -> None:
        self.tables, self.layers = tables, layers
        self.params = [*tables, *layers]
        self.need = [p.requires_grad for p in self.params]
        self.hooks = [list(p._backward_hooks.values()) if p._backward_hooks else [] for p in self.params]
        layout_for(tables, rows.device).check(rows)

    def __call__(self, codes: torch.Tensor, numeric: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out, lookup, hidden, layout = forward_pass(codes, numeric, self.tables, self.layers, check=False)
            diff = out.sub_(y)
            loss = diff.square().mean()
            _, grads = backward_pass(diff.mul_(2.0 / diff.numel()), lookup, hidden, self.tables, self.layers, layout,
                                     False, self.need)
        for p, grad, hooks in zip(self.params, grads, self.hooks):
            for hook in hooks:
                changed = hook(grad)
                grad = grad if changed is None else changed
            p.grad = grad
        return loss
