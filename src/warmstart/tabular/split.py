"""Grouped, seeded splits: identical feature rows never land on both sides.

The survey repeats rows (the same answer submitted twice, or the low and high end of one
posted range), so a plain row-level split would test on rows it trained on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..errors import DataError


def group_ids(df: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """One integer per row; rows with identical values in ``columns`` share it."""
    hashes = pd.util.hash_pandas_object(df[list(columns)].astype(str), index=False)
    return pd.factorize(hashes)[0]


def grouped_split(groups: np.ndarray, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Row indices of len(fractions)+1 parts: the given fractions first, the rest last.

    Groups are shuffled with ``seed`` and dealt whole into each part until it holds its
    share of rows, so every part is within one group of its target size.
    """
    n = len(groups)
    if sum(fractions) >= 1 or any(f <= 0 for f in fractions):
        raise DataError(f"split fractions {list(fractions)} must be positive and sum to less than 1")
    unique = np.unique(groups)
    if len(unique) < len(fractions) + 1:
        raise DataError(f"{len(unique)} distinct rows are too few to split into {len(fractions) + 1} parts")
    order = np.random.default_rng(seed).permutation(unique)
    sizes = np.bincount(groups)[order]
    cum = np.cumsum(sizes)
    bounds = np.searchsorted(cum, np.cumsum(fractions) * n)  # index of the group completing each part
    bounds = np.minimum(bounds + 1, len(order) - 1)
    bounds = np.maximum.accumulate(np.maximum(bounds, np.arange(1, len(fractions) + 1)))
    parts = np.split(order, bounds)
    return [np.flatnonzero(np.isin(groups, part)) for part in parts]


def row_fingerprints(df: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """A stable 16-hex fingerprint per row of ``columns`` (sha256 of the trimmed values).

    Stored in a checkpoint for the rows it trained and early-stopped on, so a later
    evaluation can say how many of its rows the model has already seen.
    """
    import hashlib

    text = df[list(columns)].astype(str).apply(lambda s: s.str.strip()).agg("\x1f".join, axis=1)
    return np.array([hashlib.sha256(t.encode()).hexdigest()[:16] for t in text])
