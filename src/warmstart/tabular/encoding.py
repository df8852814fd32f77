"""Preprocessing fitted on the source rows, stored as JSON, reused (not refitted) on a target.

* Categorical columns: a vocabulary. Index 0 is ``<unknown>`` (a value never seen),
  index 1 is ``<other>`` (values rarer than ``min_count`` on the source), then the
  categories. Transfer *extends* it: the target's new categories are appended after the
  source's, so every source category keeps its index and its embedding row.
* Numeric columns: standardized, ``(x - mean) / std`` with the source's mean and std.
* The target: ``z = (log(y) - mean) / std`` on the source; errors are reported in ``y``'s
  own units after inverting it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..errors import CheckpointError, DataError
from .data import LEAKS, parse_numeric, require_columns

UNKNOWN, OTHER = "<unknown>", "<other>"


@dataclass
class Preprocessing:
    target: str
    categorical: dict[str, list[str]]
    numeric: dict[str, list[float]]  # column -> [mean, std]
    target_mean: float
    target_std: float
    ignored: list[str] = field(default_factory=list)
    rare: dict[str, list[str]] = field(default_factory=dict)  # source values folded to <other>

    @property
    def columns(self) -> list[str]:
        return [*self.categorical, *self.numeric]

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "target_transform": {"kind": "log-standardize", "mean": self.target_mean, "std": self.target_std},
            "categorical": self.categorical,
            "numeric": {c: {"mean": m, "std": s} for c, (m, s) in self.numeric.items()},
            "ignored": self.ignored,
            "rare": self.rare,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Preprocessing:
        try:
            tt = data["target_transform"]
            if tt["kind"] != "log-standardize":
                raise ValueError(f"unknown target transform {tt['kind']!r}")
            cats = {str(c): [str(v) for v in vocab] for c, vocab in data["categorical"].items()}
            if any(v[:2] != [UNKNOWN, OTHER] for v in cats.values()):
                raise ValueError("a vocabulary does not start with <unknown>, <other>")
            return cls(
                target=str(data["target"]),
                categorical=cats,
                numeric={str(c): [float(v["mean"]), float(v["std"])] for c, v in data["numeric"].items()},
                target_mean=float(tt["mean"]),
                target_std=float(tt["std"]),
                ignored=[str(c) for c in data.get("ignored", [])],
                rare={str(c): [str(v) for v in vs] for c, vs in data.get("rare", {}).items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(f"the checkpoint's preprocessing is malformed: {exc!r}") from None

    # ------------------------------------------------------------------ transforms
    def encode(self, df: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor, dict[str, int]]:
        """(category indices [n, n_cat], standardized numbers [n, n_num], unknown counts)."""
        missing = [c for c in self.columns if c not in df.columns]
        if missing:
            raise DataError(
                f"the data lacks column(s) {missing} that the model was trained with; "
                f"it expects: {', '.join(self.columns)}"
            )
        n = len(df)
        cat = np.zeros((n, len(self.categorical)), dtype=np.int64)
        unknown: dict[str, int] = {}
        for j, (col, vocab) in enumerate(self.categorical.items()):
            index = {v: 1 for v in self.rare.get(col, ())}
            index.update({v: i for i, v in enumerate(vocab)})
            codes = df[col].astype(str).str.strip().map(index)
            unseen = codes.isna()
            if unseen.any():
                unknown[col] = int(unseen.sum())
            cat[:, j] = codes.fillna(0).to_numpy(dtype=np.int64)
        num = np.zeros((n, len(self.numeric)), dtype=np.float32)
        for j, (col, (mean, std)) in enumerate(self.numeric.items()):
            x = parse_numeric(df[col].astype(str), col)
            bad = ~np.isfinite(x)
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise DataError(
                    f"numeric column '{col}' has {int(bad.sum())} value(s) that are not finite numbers, "
                    f"first at data row {row + 1}: {df[col].iloc[row]!r}; fix or remove those rows"
                )
            num[:, j] = (x - mean) / std
        return torch.from_numpy(cat), torch.from_numpy(num), unknown

    def encode_target(self, y: np.ndarray) -> torch.Tensor:
        z = (np.log(np.asarray(y, dtype=np.float64)) - self.target_mean) / self.target_std
        return torch.from_numpy(z.astype(np.float32)).view(-1, 1)

    def decode_target(self, z: torch.Tensor | np.ndarray) -> np.ndarray:
        z = z.detach().cpu().numpy() if isinstance(z, torch.Tensor) else np.asarray(z)
        return np.exp(z.reshape(-1).astype(np.float64) * self.target_std + self.target_mean)


def feature_columns(df: pd.DataFrame, target: str, ignore: Sequence[str] = ()) -> list[str]:
    """Every column but the target, the ignored ones and known restatements of the target."""
    require_columns(df, list(ignore), "ignored column")
    drop = {target, *ignore, *LEAKS.get(target, ())}
    return [c for c in df.columns if c not in drop]


def fit_preprocessing(
    df: pd.DataFrame,
    target: str,
    y: np.ndarray,
    *,
    ignore: Sequence[str] = (),
    categorical: Sequence[str] = (),
    min_count: int = 2,
) -> Preprocessing:
    """Fit vocabularies, numeric scaling and the target transform on the source rows.

    A column is numeric when every value parses as a finite number, unless it is listed
    in ``categorical``; categories seen fewer than ``min_count`` times become ``<other>``.
    """
    columns = feature_columns(df, target, ignore)
    require_columns(df, list(categorical), "categorical column")
    if not columns:
        raise DataError(f"no feature columns left besides the target '{target}'")
    cats: dict[str, list[str]] = {}
    rare: dict[str, list[str]] = {}
    nums: dict[str, list[float]] = {}
    for col in columns:
        text = df[col].astype(str).str.strip()
        x = parse_numeric(text, col)
        if col not in categorical and np.isfinite(x).all():
            with np.errstate(over="ignore"):
                mean, std = float(x.mean()), float(x.std())
            if not (np.isfinite(mean) and np.isfinite(std)):
                raise DataError(
                    f"numeric column '{col}' has values too large to standardize (up to {np.abs(x).max():g}); "
                    "fix them, or --ignore the column"
                )
            nums[col] = [mean, std if std > 0 else 1.0]
        else:
            counts = text.value_counts()
            kept = sorted(counts[counts >= min_count].index)
            cats[col] = [UNKNOWN, OTHER, *kept]
            rare[col] = sorted(counts[counts < min_count].index)
    logy = np.log(y)
    std = float(logy.std())
    return Preprocessing(target, cats, nums, float(logy.mean()), std if std > 0 else 1.0,
                         sorted({*ignore, *LEAKS.get(target, ())} & set(df.columns)), rare)


@dataclass(frozen=True)
class ColumnAlignment:
    column: str
    shared: int  # categories of the target also known to the source
    shared_rows: int
    new: dict[str, int]  # category the source never saw -> target rows it covers
    unused: int  # source categories absent from the target
    rare: dict[str, int] = field(default_factory=dict)  # rare on the source (was <other>) -> rows


@dataclass(frozen=True)
class AlignmentReport:
    columns: list[ColumnAlignment]

    @property
    def new_rows(self) -> dict[str, int]:
        """Target rows per column whose category gets a row the source never trained."""
        return {c.column: sum(c.new.values()) + sum(c.rare.values()) for c in self.columns}

    def as_dict(self) -> dict[str, Any]:
        return {"columns": [c.__dict__ for c in self.columns]}

    def __str__(self) -> str:
        lines = [f"{'column':<20}{'shared':>8}{'rows':>7}{'rare':>6}{'rows':>7}{'new':>6}{'rows':>7}{'unused':>8}"
                 "  new categories (target rows)"]
        for c in self.columns:
            top = sorted(c.new.items(), key=lambda kv: -kv[1])
            shown = ", ".join(f"{k} ({v})" for k, v in top[:6]) + (f", ... {len(top) - 6} more" if len(top) > 6 else "")
            lines.append(f"{c.column:<20}{c.shared:>8}{c.shared_rows:>7}{len(c.rare):>6}{sum(c.rare.values()):>7}"
                         f"{len(c.new):>6}{sum(c.new.values()):>7}{c.unused:>8}  {shown}")
        return "\n".join(lines)


def align(prep: Preprocessing, df: pd.DataFrame) -> AlignmentReport:
    """Which target categories the source knows, which are new (and how many rows each)."""
    out = []
    for col, vocab in prep.categorical.items():
        counts = df[col].astype(str).str.strip().value_counts()
        known, rare = set(vocab[2:]), set(prep.rare.get(col, ()))
        shared = [v for v in counts.index if v in known]
        new = {str(v): int(n) for v, n in counts.items() if v not in known and v not in rare}
        was_rare = {str(v): int(n) for v, n in counts.items() if v in rare}
        out.append(ColumnAlignment(col, len(shared), int(counts[shared].sum()), new,
                                   len(known - set(counts.index)), was_rare))
    return AlignmentReport(out)


def extend_vocabulary(prep: Preprocessing, df: pd.DataFrame) -> tuple[Preprocessing, AlignmentReport]:
    """Append the target's new (and source-rare) categories after the source's, whose
    indices do not move."""
    report = align(prep, df)
    cats = {col: vocab + sorted({*a.new, *a.rare}) for (col, vocab), a in zip(prep.categorical.items(), report.columns)}
    rare = {col: [v for v in vs if v not in set(cats[col])] for col, vs in prep.rare.items()}
    extended = Preprocessing(prep.target, cats, dict(prep.numeric), prep.target_mean, prep.target_std,
                             list(prep.ignored), rare)
    return extended, report
