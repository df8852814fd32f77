"""One exception hierarchy. Every message says what was wrong, with the value, and the fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class WarmstartError(Exception):
    """Base of every error warmstart raises on purpose."""


class ConfigError(WarmstartError):
    """An option, name or argument is not valid (unknown scheme, strategy, flag value)."""


class PatternError(ConfigError):
    """A name pattern matched no parameter or module."""


class DataError(WarmstartError):
    """Input data is unusable: missing column, NaN target, empty filter result."""


class CheckpointError(WarmstartError):
    """A checkpoint cannot be read or written."""


class UnsafeCheckpointError(CheckpointError):
    """A file would need to run code (a pickle) to be loaded; it is refused."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint file is truncated, altered or not in the expected format."""


class ShapeMismatchError(CheckpointError):
    """Weights do not fit the model (missing, unexpected or differently shaped keys)."""


class TrainingDivergedError(WarmstartError):
    """The loss became non-finite; training stopped and kept the last finite weights."""


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """Return " (did you mean 'x'?)" for the closest choice, or "" when none is close."""
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def listing(names: Iterable[str], limit: int = 20) -> str:
    """A short comma-separated listing of names, ending with '... (N more)' when long."""
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")
