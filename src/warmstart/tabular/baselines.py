"""Baselines a sceptic asks for, each fitted on the same target training rows.

All regressors model log(y) and are scored on y. ``Context`` carries what a baseline may
use: the target training rows, and (for the pooled ones and the source model) the
source rows and the pretrained source model. None of them sees the test rows' targets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from ..errors import ConfigError, did_you_mean
from .auto import recentered_model
from .encoding import Preprocessing
from .model import TabularMLP

DOMAIN = "__domain__"


@dataclass
class Context:
    train: pd.DataFrame  # target training rows
    y: np.ndarray
    test: pd.DataFrame
    source: pd.DataFrame  # source rows (for pooled baselines)
    y_source: np.ndarray
    source_model: TabularMLP
    source_prep: Preprocessing
    seed: int
    pooled_mlp: Callable[[pd.DataFrame, np.ndarray, pd.DataFrame], np.ndarray]  # train pooled, predict test


def _split_columns(prep: Preprocessing) -> tuple[list[str], list[str]]:
    return list(prep.categorical), list(prep.numeric)


def _numeric(frame: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    return frame[cols].apply(lambda s: pd.to_numeric(s.str.strip(), errors="coerce")).astype(float)


def _design(frame: pd.DataFrame, cats: list[str], nums: list[str]) -> pd.DataFrame:
    out = frame[cats].astype(str).apply(lambda s: s.str.strip())
    return pd.concat([out, _numeric(frame, nums)], axis=1)


def median(ctx: Context) -> np.ndarray:
    """The target median, as exp(mean log y) over the training rows."""
    return np.full(len(ctx.test), float(np.exp(np.log(ctx.y).mean())))


def _predict(model: TabularMLP, prep: Preprocessing, frame: pd.DataFrame) -> np.ndarray:
    from .workflow import predict_frame

    return predict_frame(model, prep, frame)[0]


def source(ctx: Context) -> np.ndarray:
    """The source model as it is (zero-shot): unseen categories use its mean row."""
    return _predict(ctx.source_model, ctx.source_prep, ctx.test)


def recentered(ctx: Context) -> np.ndarray:
    """The source model with the target's categories added (mean rows) and its output
    shifted by the mean residual on the training rows: no gradient step at all."""
    model, prep = recentered_model(ctx.source_model, ctx.source_prep, ctx.train, ctx.y, np.arange(len(ctx.train)))
    return _predict(model, prep, ctx.test)


def ridge(ctx: Context) -> np.ndarray:
    """Ridge regression on one-hot categories and standardized numbers; alpha by LOO CV."""
    cats, nums = _split_columns(ctx.source_prep)
    pre = ColumnTransformer([
        ("cat", OneHotEncoder(handle_unknown="ignore"), cats),
        ("num", StandardScaler(), nums),
    ])
    model = make_pipeline(pre, RidgeCV(alphas=np.logspace(-2, 3, 12)))
    model.fit(_design(ctx.train, cats, nums), np.log(ctx.y))
    return np.exp(model.predict(_design(ctx.test, cats, nums)))


def _hgb(train: pd.DataFrame, logy: np.ndarray, test: pd.DataFrame, cats: list[str], nums: list[str], seed: int) -> np.ndarray:
    enc = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1)
    Xtr = _design(train, cats, nums)
    Xte = _design(test, cats, nums)
    codes_tr = enc.fit_transform(Xtr[cats]) if cats else np.zeros((len(Xtr), 0))
    codes_te = enc.transform(Xte[cats]) if cats else np.zeros((len(Xte), 0))
    # Unknown categories (-1) become NaN: the trees send them down the missing-value branch.
    codes_te = np.where(codes_te < 0, np.nan, codes_te)
    A = np.hstack([codes_tr, Xtr[nums].to_numpy()])
    B = np.hstack([codes_te, Xte[nums].to_numpy()])
    leaf = int(min(20, max(3, len(train) // 10)))
    model = HistGradientBoostingRegressor(
        categorical_features=list(range(len(cats))) or None, min_samples_leaf=leaf, random_state=seed,
        early_stopping=False, max_iter=200, learning_rate=0.05,
    )
    model.fit(A, logy)
    return np.exp(model.predict(B))


def hgb(ctx: Context) -> np.ndarray:
    """scikit-learn HistGradientBoostingRegressor on the target rows only."""
    cats, nums = _split_columns(ctx.source_prep)
    return _hgb(ctx.train, np.log(ctx.y), ctx.test, cats, nums, ctx.seed)


def _pooled(ctx: Context) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    pooled = pd.concat([ctx.source.assign(**{DOMAIN: "source"}), ctx.train.assign(**{DOMAIN: "target"})],
                       ignore_index=True)
    return pooled, np.concatenate([ctx.y_source, ctx.y]), ctx.test.assign(**{DOMAIN: "target"})


def hgb_pooled(ctx: Context) -> np.ndarray:
    """The same trees on source + target rows, with a source/target indicator column."""
    cats, nums = _split_columns(ctx.source_prep)
    pooled, y, test = _pooled(ctx)
    return _hgb(pooled, np.log(y), test, [*cats, DOMAIN], nums, ctx.seed)


def mlp_pooled(ctx: Context) -> np.ndarray:
    """A TabularMLP trained from scratch on source + target rows with the indicator."""
    pooled, y, test = _pooled(ctx)
    return ctx.pooled_mlp(pooled, y, test)


BASELINES: dict[str, Callable[[Context], np.ndarray]] = {
    "median": median,
    "source": source,
    "recentered": recentered,
    "ridge": ridge,
    "hgb": hgb,
    "hgb-pooled": hgb_pooled,
    "mlp-pooled": mlp_pooled,
}


def check_baselines(names: list[str]) -> list[str]:
    for name in names:
        if name not in BASELINES:
            raise ConfigError(
                f"unknown baseline '{name}'{did_you_mean(name, BASELINES)}; baselines: {', '.join(BASELINES)}"
            )
    return names
