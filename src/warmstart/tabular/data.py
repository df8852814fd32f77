"""Reading tables (CSV, Parquet, the bundled survey), validating them, synthetic rows.

Every value is read as text and parsed where a column's role is known, so that an odd
value is reported with its column and row instead of silently becoming NaN.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError, did_you_mean

BUNDLED = {"salaries": "ds_salaries.csv"}
# Columns that restate a target in another form; ignored as features for that target.
LEAKS = {"salary_in_usd": ("salary", "salary_currency")}


def bundled_path(name: str) -> Path:
    return Path(str(resources.files("warmstart") / "data" / BUNDLED[name]))


def read_table(source: str | Path) -> pd.DataFrame:
    """Read a CSV/Parquet file, or the bundled data set by name ('salaries'), as text."""
    text = str(source)
    if text in BUNDLED:
        path = bundled_path(text)
    else:
        path = Path(text)
        if not path.is_file():
            raise DataError(
                f"data '{text}' is neither a file nor a bundled data set; bundled: "
                f"{', '.join(BUNDLED)}{did_you_mean(text, BUNDLED)}"
            )
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            try:
                df = pd.read_parquet(path).astype(str)
            except ImportError:
                raise DataError("reading Parquet needs pyarrow: pip install pyarrow, or give a CSV") from None
        else:
            with open(path, "rb") as f:
                head = f.readline()
            names = [c.strip() for c in head.decode("utf-8-sig", errors="replace").rstrip("\r\n").split(",")]
            dupes = sorted({c for c in names if names.count(c) > 1})
            if dupes:
                raise DataError(f"{path}: the header repeats column(s) {dupes}; rename them")
            df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except DataError:
        raise
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, OSError) as exc:
        raise DataError(f"cannot read {path} as a table: {str(exc).strip()}") from None
    df.columns = [str(c).strip() for c in df.columns]
    if df.empty:
        raise DataError(f"{path} has no data rows")
    return df


def require_columns(df: pd.DataFrame, columns: list[str], what: str = "column") -> None:
    for col in columns:
        if col not in df.columns:
            raise DataError(
                f"{what} '{col}' not found{did_you_mean(col, df.columns)}; columns are: {', '.join(df.columns)}"
            )


def parse_numeric(values: pd.Series, column: str) -> np.ndarray:
    """Parse a text column as float64; unparseable or empty values become NaN."""
    return pd.to_numeric(values.str.strip(), errors="coerce").to_numpy(dtype=np.float64)


def target_values(df: pd.DataFrame, column: str, *, strict: bool = False) -> tuple[pd.DataFrame, np.ndarray, dict[str, int]]:
    """Rows with a usable (finite, positive) target, the target, and counts of dropped rows.

    The target is modelled on the log scale, so zero and negative values cannot be used.
    ``strict`` refuses instead of dropping.
    """
    require_columns(df, [column], "target column")
    y = parse_numeric(df[column], column)
    raw = df[column].to_numpy()
    problems = {
        "not a number": np.isnan(y) & ~np.isin(np.char.lower(raw.astype(str)), ["nan", "inf", "-inf", "infinity"]),
        "NaN or infinite": ~np.isfinite(y) & np.isin(np.char.lower(raw.astype(str)), ["nan", "inf", "-inf", "infinity"]),
        "zero or negative": np.isfinite(y) & (y <= 0),
    }
    bad = np.zeros(len(df), dtype=bool)
    counts = {}
    for why, mask in problems.items():
        if mask.any():
            counts[why] = int(mask.sum())
            bad |= mask
    if counts and strict:
        first = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"target column '{column}' has unusable values ({', '.join(f'{n} {w}' for w, n in counts.items())}), "
            f"first at data row {first + 1}: {raw[first]!r}; fix them or run without --strict to drop those rows"
        )
    if bad.all():
        raise DataError(f"target column '{column}' has no usable (positive, finite) value in {len(df)} rows")
    return df.loc[~bad].reset_index(drop=True), y[~bad], counts


# ---------------------------------------------------------------- synthetic survey rows

# (country, share of rows, log-salary offset vs US, currency, USD->currency rate)
_COUNTRIES = [
    ("US", 0.80, 0.00, "USD", 1.0), ("GB", 0.045, -0.62, "GBP", 0.80), ("CA", 0.025, -0.25, "CAD", 1.30),
    ("ES", 0.02, -0.85, "EUR", 0.93), ("DE", 0.015, -0.60, "EUR", 0.93), ("IN", 0.015, -1.55, "INR", 80.0),
    ("FR", 0.01, -0.75, "EUR", 0.93), ("PT", 0.005, -1.00, "EUR", 0.93), ("GR", 0.005, -1.05, "EUR", 0.93),
    ("NL", 0.005, -0.55, "EUR", 0.93), ("BR", 0.005, -1.30, "BRL", 5.0), ("AU", 0.005, -0.30, "AUD", 1.45),
    ("IE", 0.003, -0.50, "EUR", 0.93), ("PL", 0.003, -1.10, "PLN", 4.3), ("CH", 0.002, -0.20, "CHF", 0.92),
    ("AT", 0.002, -0.70, "EUR", 0.93), ("IT", 0.002, -0.90, "EUR", 0.93), ("SE", 0.002, -0.75, "SEK", 10.5),
    ("DK", 0.002, -0.55, "DKK", 6.9), ("MX", 0.001, -1.40, "MXN", 19.0),
]
_LEVELS = [("EN", 0.07, -0.45), ("MI", 0.22, -0.20), ("SE", 0.67, 0.0), ("EX", 0.04, 0.30)]
_TITLES = [
    ("Data Engineer", 0.22, 0.0), ("Data Scientist", 0.22, 0.02), ("Data Analyst", 0.16, -0.25),
    ("Machine Learning Engineer", 0.08, 0.10), ("Analytics Engineer", 0.03, 0.0),
    ("Data Architect", 0.03, 0.12), ("Research Scientist", 0.02, 0.12), ("Applied Scientist", 0.02, 0.15),
    ("Data Science Manager", 0.03, 0.15), ("Research Engineer", 0.02, 0.08),
    ("ML Engineer", 0.02, 0.08), ("Data Manager", 0.02, -0.10), ("Business Intelligence Engineer", 0.02, -0.05),
    ("Machine Learning Scientist", 0.02, 0.12), ("Computer Vision Engineer", 0.01, 0.0),
    ("BI Data Analyst", 0.01, -0.30), ("Data Specialist", 0.01, -0.15), ("Head of Data", 0.01, 0.25),
    ("AI Scientist", 0.01, 0.05), ("Data Operations Engineer", 0.01, -0.10),
]


def _pick(rng: np.random.Generator, table: list[tuple], n: int) -> np.ndarray:
    p = np.array([t[1] for t in table], dtype=float)
    return rng.choice(len(table), size=n, p=p / p.sum())


def synthetic_salaries(n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` realistic synthetic survey rows with the bundled file's columns and codes.

    log(salary_in_usd) = 11.85 + country + level + title + year trend + remote + size
    + N(0, 0.35^2); ``salary`` is that amount in the country's currency.
    """
    if n < 1:
        raise DataError(f"row count must be at least 1, got {n}")
    rng = np.random.default_rng(seed)
    c, l, t = _pick(rng, _COUNTRIES, n), _pick(rng, _LEVELS, n), _pick(rng, _TITLES, n)
    year = rng.choice([2020, 2021, 2022, 2023], size=n, p=[0.02, 0.06, 0.44, 0.48])
    remote = rng.choice([0, 50, 100], size=n, p=[0.5, 0.05, 0.45])
    size = rng.choice(np.array(["S", "M", "L"]), size=n, p=[0.05, 0.84, 0.11])
    emp = rng.choice(np.array(["FT", "PT", "CT", "FL"]), size=n, p=[0.99, 0.004, 0.003, 0.003])
    country = np.array([x[0] for x in _COUNTRIES])[c]
    log_usd = (
        11.85
        + np.array([x[2] for x in _COUNTRIES])[c]
        + np.array([x[2] for x in _LEVELS])[l]
        + np.array([x[2] for x in _TITLES])[t]
        + 0.05 * (year - 2023)
        - 0.03 * (remote == 50)
        + np.select([size == "S", size == "L"], [-0.15, 0.03], 0.0)
        + rng.normal(0.0, 0.35, size=n)
    )
    usd = np.clip(np.round(np.exp(log_usd)), 5000, 450000).astype(np.int64)
    fx = np.array([x[4] for x in _COUNTRIES])[c]
    residence = np.where(rng.random(n) < 0.97, country, np.array(["US", "GB", "IN", "CA"])[rng.integers(0, 4, n)])
    return pd.DataFrame({
        "work_year": year.astype(str),
        "experience_level": np.array([x[0] for x in _LEVELS])[l],
        "employment_type": emp,
        "job_title": np.array([x[0] for x in _TITLES])[t],
        "salary": np.round(usd * fx).astype(np.int64).astype(str),
        "salary_currency": np.array([x[3] for x in _COUNTRIES])[c],
        "salary_in_usd": usd.astype(str),
        "employee_residence": residence,
        "remote_ratio": remote.astype(str),
        "company_location": country,
        "company_size": size,
    })


