"""The ``--rows`` filter language: small, safe, never evaluated as code.

    COL=V1,V2      rows whose COL is one of the values
    COL!=V1,V2     rows whose COL is none of them
    COL=@europe    a named group (EU-27 + IS LI NO + GB + CH), also @eu, @us, @eea

Several filters are ANDed. Values are compared as text, after trimming spaces.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataError, did_you_mean

EU27 = ("AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK").split()
GROUPS: dict[str, tuple[str, ...]] = {
    "eu": tuple(EU27),
    "eea": tuple(EU27 + ["IS", "LI", "NO"]),
    "europe": tuple(EU27 + ["IS", "LI", "NO", "GB", "CH"]),
    "us": ("US",),
}
_FILTER = re.compile(r"^\s*([^=!]+?)\s*(!=|=)\s*(.*?)\s*$", re.S)


@dataclass(frozen=True)
class RowFilter:
    column: str
    negate: bool
    values: tuple[str, ...]
    text: str

    def __str__(self) -> str:
        return self.text


def parse_filter(text: str) -> RowFilter:
    """Parse one ``COL=V1,V2`` / ``COL!=V`` / ``COL=@group`` expression."""
    m = _FILTER.match(str(text))
    if not m or not m.group(3):
        raise ConfigError(
            f"cannot read row filter {text!r}; write COL=V1,V2, COL!=V or COL=@group "
            f"(groups: {', '.join('@' + g for g in GROUPS)})"
        )
    column, op, raw = m.groups()
    values: list[str] = []
    for item in (v.strip() for v in raw.split(",")):
        if not item:
            raise ConfigError(f"row filter {text!r} has an empty value")
        if item.startswith("@"):
            name = item[1:].lower()
            if name not in GROUPS:
                raise ConfigError(
                    f"unknown group '{item}' in {text!r}{did_you_mean(name, GROUPS)}; "
                    f"groups: {', '.join('@' + g for g in GROUPS)}"
                )
            values += GROUPS[name]
        else:
            values.append(item)
    return RowFilter(column, op == "!=", tuple(dict.fromkeys(values)), str(text))


def filter_mask(df: pd.DataFrame, filters: Iterable[str | RowFilter]) -> np.ndarray:
    """Boolean mask of the rows that pass every filter; bad columns or values are errors."""
    mask = np.ones(len(df), dtype=bool)
    for f in filters:
        f = f if isinstance(f, RowFilter) else parse_filter(f)
        if f.column not in df.columns:
            raise DataError(
                f"row filter '{f}': column '{f.column}' not found{did_you_mean(f.column, df.columns)}; "
                f"columns are: {', '.join(df.columns)}"
            )
        col = df[f.column].astype(str).str.strip()
        present = set(col.unique())
        hit = col.isin(f.values).to_numpy()
        if not hit.any():
            close = sorted({c for v in f.values for c in difflib.get_close_matches(v, present, n=3, cutoff=0.5)})
            known = close or sorted(present)[:15]
            raise DataError(
                f"row filter '{f}': no row has {f.column} = {', '.join(f.values[:10])}; "
                f"{'closest values' if close else 'some values'} in the data: {', '.join(known)}"
            )
        mask &= ~hit if f.negate else hit
    return mask


def apply_filters(df: pd.DataFrame, filters: Iterable[str | RowFilter]) -> pd.DataFrame:
    """The rows passing every filter (index reset); an empty result is an error."""
    filters = list(filters)
    mask = filter_mask(df, filters)
    if not mask.any():
        raise DataError(f"no row passes all of the filters {', '.join(map(str, filters))}")
    return df.loc[mask].reset_index(drop=True)
