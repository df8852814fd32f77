"""Training speed: warmstart's trainer against the textbook DataLoader loop, side by side.

    python benchmarks/train_speed.py --json          # n = 3k, 100k, 1M
    python benchmarks/train_speed.py --quick         # n = 100k only, under a minute

Same model (TabularMLP: 8 embedded categorical + 3 numeric columns, body 64-64, head 1),
same data, same optimizer (Adam, lr 1e-3), one epoch per timing, median of --repeats.
Variants:
  textbook      TensorDataset + DataLoader(shuffle=True) + loss.item() per batch
  warmstart     warmstart.train.fit (index slices of in-memory tensors, fused Adam, 1 thread)
  sequential16  16 warmstart fits one after another (total rows / total time)
  cohort16      the same 16 models trained at once by warmstart.tabular.cohort (stacked weights, bmm)
Also the machine's float32 sgemm peak (1024x1024 matmul) and each variant's share of it
(FLOPs of forward + backward ~ 3 x 2 x parameters-in-matmuls per row).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from warmstart.tabular.cohort import fit_cohort
from warmstart.tabular.model import TabularMLP
from warmstart.train import fit

CARDS = {f"c{i}": c for i, c in enumerate([4, 4, 4, 60, 60, 40, 3, 5])}


def make_data(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    cat = torch.stack([torch.randint(0, c, (n,), generator=g) for c in CARDS.values()], 1)
    num = torch.randn(n, 3, generator=g)
    y = (num[:, :1] + 0.1 * cat[:, 3:4].float() / 60 + 0.1 * torch.randn(n, 1, generator=g))
    return cat, num, y


def make_model(seed: int = 0) -> TabularMLP:
    torch.manual_seed(seed)
    return TabularMLP(CARDS, 3, (64, 64))


def flops_per_row(model: TabularMLP) -> float:
    """Multiply-adds in the Linear layers, x2 for FLOPs, x3 for forward + backward."""
    return 6.0 * sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))


def textbook(cat, num, y, batch: int) -> float:
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(cat, num, y), batch_size=batch, shuffle=True)
    loss_fn = nn.MSELoss()
    start = time.perf_counter()
    running = 0.0
    for xb_cat, xb_num, yb in loader:
        opt.zero_grad()
        loss = loss_fn(model(xb_cat, xb_num), yb)
        loss.backward()
        opt.step()
        running += loss.item()
    return len(y) / (time.perf_counter() - start)


def warmstart_fit(cat, num, y, batch: int) -> float:
    model = make_model()
    start = time.perf_counter()
    fit(model, (cat, num), y, epochs=1, batch_size=batch, lr=1e-3)
    return len(y) / (time.perf_counter() - start)


def sequential16(cat, num, y, batch: int) -> float:
    start = time.perf_counter()
    for k in range(16):
        model = make_model(k)
        fit(model, (cat, num), y, epochs=1, batch_size=batch, lr=1e-3, seed=k)
    return 16 * len(y) / (time.perf_counter() - start)


def cohort16(cat, num, y, batch: int) -> float:
    models = [make_model(k) for k in range(16)]
    start = time.perf_counter()
    fit_cohort(models, (cat, num), y, strategies=["full"] * 16, lrs=[1e-3] * 16, seeds=list(range(16)), epochs=1,
               batch_size=batch)
    return 16 * len(y) / (time.perf_counter() - start)


def sgemm_gflops(size: int = 1024, repeats: int = 20) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size**3 / min(times) / 1e9


VARIANTS = {"textbook": textbook, "warmstart": warmstart_fit, "sequential16": sequential16, "cohort16": cohort16}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="n = 100k only")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, nargs="+", default=[64])
    args = parser.parse_args()
    sizes = [100_000] if args.quick else [3_000, 100_000, 1_000_000]
    peak = sgemm_gflops()
    per_row = flops_per_row(make_model())
    results = []
    for n in sizes:
        cat, num, y = make_data(n)
        for batch in args.batch:
            base = None
            for name, fn in VARIANTS.items():
                reps = args.repeats if not (name.endswith("16") and n >= 1_000_000) else 1
                rate = statistics.median(fn(cat, num, y, batch) for _ in range(reps))
                base = base or rate
                results.append({"n": n, "batch": batch, "variant": name, "rows_per_s": round(rate, 1),
                                "ratio_vs_textbook": round(rate / base, 2),
                                "peak_fraction": round(rate * per_row / (peak * 1e9), 5)})
                if not args.json:
                    r = results[-1]
                    print(f"n={n:>9,} batch={batch:>4} {name:<13} {rate:>12,.0f} rows/s  "
                          f"x{r['ratio_vs_textbook']:<5} {100 * r['peak_fraction']:.2f}% of sgemm peak", flush=True)
    if args.json:
        print(json.dumps({"sgemm_gflops": round(peak, 1), "results": results}))
    else:
        print(f"sgemm peak: {peak:.1f} GFLOP/s on {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
