"""Checkpoints as directories, and loading weights safely into any model.

A checkpoint is a directory: ``config.json`` (plain JSON, format ``warmstart/1``),
``model.safetensors`` (the weights; its sha256 is recorded in ``config.json`` and checked
on every load) and ``history.csv`` (one row per epoch). Nothing in it can run code.

Saves are atomic: the new checkpoint is written and fsynced in a hidden temporary
directory beside the target, then swapped in with one rename, so a crash or a full disk
leaves either the old checkpoint or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import csv
import ctypes
import errno
import hashlib
import io
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from .errors import (
    CheckpointError,
    CorruptCheckpointError,
    ShapeMismatchError,
    UnsafeCheckpointError,
    listing,
)

FORMAT = "warmstart/1"
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
HISTORY = "history.csv"
# Present while a save is in progress: a directory holding it is never read as a checkpoint.
INCOMPLETE = ".incomplete"
# Names of the hidden directories a save works in (".NAME.partial-XXXX", ".NAME.old-XXXX"):
# never read as a checkpoint, even when complete, since they are not where it was saved.
TEMPORARY_NAME = re.compile(r"^\..+\.(partial|old)-\w+$")
# Top-level config.json fields and their JSON types; anything else is rejected.
CONFIG_FIELDS: dict[str, type | tuple[type, ...]] = {
    "format": str,
    "weights": dict,
    "model": dict,
    "preprocessing": (dict, type(None)),
    "target": (dict, type(None)),
    "training": dict,
    "metrics": dict,
    "lineage": dict,
    "trainable": dict,
    "versions": dict,
    "split": (dict, type(None)),
}
Mismatch = Literal["error", "skip", "slice"]
# The exception a weights-only load raises for a pickle that needs code (we never unpickle).
UnpicklingError = torch.serialization.pickle.UnpicklingError


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def versions() -> dict[str, str]:
    """Versions that matter for reproducing a run (also what `warmstart env` prints)."""
    import numpy
    import safetensors

    from . import __version__

    return {
        "warmstart": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "safetensors": safetensors.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
    }


# ---------------------------------------------------------------- atomic directory writes

def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_file_atomically(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to a hidden temporary file beside ``path``, fsync, rename over ``path``.

    A crash leaves the old file or the new one, never a half-written one. An ``OSError``
    propagates (the temporary file removed) for the caller to turn into its own message.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        _write_file(tmp, data)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directories (Linux renameat2 RENAME_EXCHANGE); False if unsupported."""
    if sys.platform != "linux":
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def write_directory_atomically(target: Path, files: Mapping[str, bytes], *, overwrite: bool) -> Path:
    """Write ``files`` as the directory ``target`` in one step; the old one survives any failure."""
    target = Path(target)
    if target.exists() and not overwrite:
        raise CheckpointError(f"'{target}' already exists; choose another --out or pass --overwrite")
    if target.exists() and not target.is_dir():
        raise CheckpointError(f"'{target}' exists and is not a directory; choose another --out")
    parent = target.parent
    # A save killed mid-way leaves its hidden temporary directory behind; the next save of
    # the same target removes it (two processes must not save to one target at once).
    for stale in [*parent.glob(f".{target.name}.partial-*"), *parent.glob(f".{target.name}.old-*")]:
        shutil.rmtree(stale, ignore_errors=True)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=parent))
    except OSError as exc:
        raise CheckpointError(f"cannot write a checkpoint in '{parent}': {exc.strerror or exc}") from None
    try:
        _write_file(tmp / INCOMPLETE, b"")
        for name, data in files.items():
            _write_file(tmp / name, data)
        (tmp / INCOMPLETE).unlink()
        _fsync_dir(tmp)
        if not target.exists():
            os.rename(tmp, target)
        elif _exchange(tmp, target):
            shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old checkpoint
        else:
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=parent))
            os.rename(target, old / "c")
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        _fsync_dir(parent)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        why = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        raise CheckpointError(
            f"could not save the checkpoint '{target}': {why}; nothing was changed there"
        ) from None
    return target


# ---------------------------------------------------------------- checkpoint save / load

def state_dict_bytes(model: nn.Module | Mapping[str, torch.Tensor]) -> bytes:
    """Serialize a state dict with safetensors (cloned: tied weights are stored twice)."""
    state = model.state_dict() if isinstance(model, nn.Module) else model
    return st_save({k: v.detach().cpu().contiguous().clone() for k, v in state.items()})


def history_bytes(history: Sequence[Mapping[str, Any]]) -> bytes:
    buf = io.StringIO()
    columns: list[str] = []
    for row in history:
        columns += [c for c in row if c not in columns]
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return buf.getvalue().encode()


def save_checkpoint(
    directory: str | os.PathLike[str],
    model: nn.Module,
    config: Mapping[str, Any] | None = None,
    *,
    history: Sequence[Mapping[str, Any]] = (),
    overwrite: bool = False,
) -> Path:
    """Save ``model`` and ``config`` as a checkpoint directory, atomically; return its path."""
    from .freeze import trainable_map

    weights = state_dict_bytes(model)
    full = {k: v for k, v in (config or {}).items()}
    unknown = set(full) - set(CONFIG_FIELDS)
    if unknown:
        raise CheckpointError(f"unknown config fields {sorted(unknown)}; allowed: {sorted(CONFIG_FIELDS)}")
    full["format"] = FORMAT
    full["weights"] = {"file": WEIGHTS, "sha256": sha256_bytes(weights), "bytes": len(weights)}
    full.setdefault("model", {})
    full.setdefault("training", {})
    full.setdefault("metrics", {})
    full.setdefault("lineage", {"parent": None, "strategy": None})
    full["trainable"] = trainable_map(model).as_dict()
    full["versions"] = versions()
    try:
        config_bytes = json.dumps(full, indent=2, sort_keys=False, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"config is not plain JSON: {exc}") from None
    files = {WEIGHTS: weights, HISTORY: history_bytes(history), CONFIG: config_bytes}
    return write_directory_atomically(Path(directory), files, overwrite=overwrite)


def validate_config(config: Any, where: Path) -> dict[str, Any]:
    """Check config.json's fields and types; name the first bad field."""
    if not isinstance(config, dict):
        raise CorruptCheckpointError(f"{where} is not a JSON object")
    for key, value in config.items():
        if key not in CONFIG_FIELDS:
            raise CorruptCheckpointError(
                f"{where}: unexpected field '{key}'; allowed fields: {', '.join(CONFIG_FIELDS)}"
            )
        if not isinstance(value, CONFIG_FIELDS[key]):
            raise CorruptCheckpointError(
                f"{where}: field '{key}' has type {type(value).__name__}, expected "
                f"{getattr(CONFIG_FIELDS[key], '__name__', 'object')}"
            )
    if config.get("format") != FORMAT:
        raise CorruptCheckpointError(
            f"{where}: format is {config.get('format')!r}, expected '{FORMAT}'"
        )
    weights = config.get("weights", {})
    if not isinstance(weights.get("sha256"), str) or len(weights["sha256"]) != 64:
        raise CorruptCheckpointError(f"{where}: field 'weights.sha256' is missing or not a sha256")
    return config


def read_config(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a checkpoint's config.json."""
    path = Path(directory) / CONFIG
    if not Path(directory).is_dir():
        raise CheckpointError(f"checkpoint directory '{directory}' does not exist")
    if (Path(directory) / INCOMPLETE).exists() or TEMPORARY_NAME.match(Path(directory).name):
        raise CorruptCheckpointError(
            f"'{directory}' is an unfinished save left by an interrupted write, not a checkpoint"
        )
    if not path.is_file():
        raise CorruptCheckpointError(
            f"'{directory}' is not a warmstart checkpoint: it has no {CONFIG}"
        )
    try:
        config = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptCheckpointError(f"{path} is not valid JSON: {exc}") from None
    return validate_config(config, path)


@dataclass
class Checkpoint:
    path: Path
    config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    sha256: str

    def history(self) -> list[dict[str, str]]:
        path = self.path / HISTORY
        if not path.is_file():
            return []
        with open(path, newline="") as f:
            return list(csv.DictReader(f))


def _safetensors_state(data: bytes, where: Path) -> dict[str, torch.Tensor]:
    if not data:
        raise CorruptCheckpointError(f"{where} is empty")
    try:
        return dict(st_load(data))
    except (SafetensorError, ValueError, RuntimeError, OSError) as exc:
        raise CorruptCheckpointError(f"{where} is not a valid safetensors file ({exc})") from None


def load_checkpoint(directory: str | os.PathLike[str]) -> Checkpoint:
    """Read a checkpoint directory, verifying the weights against the recorded sha256."""
    directory = Path(directory)
    config = read_config(directory)
    path = directory / config["weights"].get("file", WEIGHTS)
    if path.name != WEIGHTS:
        raise CorruptCheckpointError(f"{directory / CONFIG}: field 'weights.file' must be '{WEIGHTS}'")
    if not path.is_file():
        raise CorruptCheckpointError(f"checkpoint '{directory}' is missing {WEIGHTS}")
    data = path.read_bytes()
    digest = sha256_bytes(data)
    if digest != config["weights"]["sha256"]:
        raise CorruptCheckpointError(
            f"{path} does not match the sha256 recorded in {CONFIG} "
            f"(expected {config['weights']['sha256'][:12]}..., found {digest[:12]}...): "
            "the file was changed or damaged; restore it or retrain"
        )
    return Checkpoint(directory, config, _safetensors_state(data, path), digest)


def _unwrap(obj: Any, where: Path) -> dict[str, torch.Tensor]:
    """Accept a plain state dict, or one nested under 'state_dict'/'model' (common exports)."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "model_state_dict"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
        if all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
            return dict(obj)
    raise UnsafeCheckpointError(
        f"{where} does not hold a state dict of tensors (found {type(obj).__name__}); "
        "save one with torch.save(model.state_dict(), PATH)"
    )


def read_pt(path: Path) -> dict[str, torch.Tensor]:
    """Read a foreign .pt/.pth state dict with ``torch.load(weights_only=True)`` only.

    A pickle that needs anything beyond tensors and plain containers (a whole pickled
    model, or a payload that runs code) is refused; there is no unsafe fallback.
    """
    if path.stat().st_size == 0:
        raise CorruptCheckpointError(f"{path} is empty")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except UnpicklingError as exc:
        raise UnsafeCheckpointError(
            f"{path} needs code to be unpickled, so it was not loaded ({str(exc).splitlines()[0]}). "
            "If it is a whole model saved with torch.save(model) by you, load it in a trusted "
            "session and save model.state_dict() instead, or use `warmstart convert --trust-pickle`."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise CorruptCheckpointError(f"{path} is not a readable PyTorch file ({exc})") from None
    return _unwrap(obj, path)


@dataclass(frozen=True)
class KeyResult:
    key: str
    action: str  # "loaded", "skipped (shape)", "sliced", "missing (fresh init)", "unexpected (ignored)"
    source_shape: tuple[int, ...] | None = None
    target_shape: tuple[int, ...] | None = None


@dataclass
class LoadReport:
    """What ``load_pretrained`` did with every key; ``str()`` says what starts fresh."""

    source: str
    sha256: str | None
    results: list[KeyResult] = field(default_factory=list)

    def _keys(self, action: str) -> list[str]:
        return [r.key for r in self.results if r.action == action]

    @property
    def loaded(self) -> list[str]:
        return self._keys("loaded")

    @property
    def missing(self) -> list[str]:
        return self._keys("missing")

    @property
    def unexpected(self) -> list[str]:
        return self._keys("unexpected")

    @property
    def skipped(self) -> list[str]:
        return self._keys("skipped")

    @property
    def sliced(self) -> list[str]:
        return self._keys("sliced")

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "sha256": self.sha256,
            "results": [r.__dict__ for r in self.results],
        }

    def __str__(self) -> str:
        lines = [f"loaded {len(self.loaded)} of {len(self.results)} keys from {self.source}"]
        for r in self.results:
            if r.action == "loaded":
                continue
            shapes = f" {list(r.source_shape or [])} -> {list(r.target_shape or [])}" if r.source_shape and r.target_shape else ""
            what = {
                "missing": "not in source, keeps its fresh init",
                "unexpected": "not in model, ignored",
                "skipped": "shape differs, keeps its fresh init",
                "sliced": "shape differs, overlapping slice copied, rest keeps its fresh init",
            }[r.action]
            lines.append(f"  {r.key}: {what}{shapes}")
        return "\n".join(lines)


def read_state(source: str | os.PathLike[str] | Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str, str | None]:
    """(state dict, description, sha256) from a checkpoint dir, .safetensors, .pt/.pth or a dict."""
    if isinstance(source, Mapping):
        return dict(source), "a state dict", None
    path = Path(source)
    if path.is_dir():
        ckpt = load_checkpoint(path)
        return ckpt.state_dict, str(path), ckpt.sha256
    if not path.is_file():
        raise CheckpointError(
            f"'{path}' is neither a checkpoint directory nor a weights file; looked for a "
            f"directory with {CONFIG} and {WEIGHTS}, or a .safetensors/.pt/.pth file"
        )
    data = path.read_bytes()
    if path.suffix == ".safetensors":
        return _safetensors_state(data, path), str(path), sha256_bytes(data)
    if path.suffix in (".pt", ".pth", ".bin"):
        return read_pt(path), str(path), sha256_bytes(data)
    raise CheckpointError(f"'{path}': unknown weights format '{path.suffix}'; use .safetensors, .pt or .pth")


def _strip_prefix(state: dict[str, torch.Tensor], model_keys: set[str]) -> dict[str, torch.Tensor]:
    """Drop a 'module.' prefix (DataParallel/DDP/compile exports) when that makes keys fit."""
    for prefix in ("module.", "_orig_mod."):
        if state and all(k.startswith(prefix) for k in state) and not any(k in model_keys for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


@torch.no_grad()
def load_pretrained(
    model: nn.Module,
    source: str | os.PathLike[str] | Mapping[str, torch.Tensor],
    *,
    strict: bool = True,
    on_mismatch: Mismatch = "error",
) -> LoadReport:
    """Copy weights from ``source`` into ``model``; return a report of every key.

    ``strict``: keys missing from the source or unknown to the model are an error.
    ``on_mismatch`` for keys whose shapes differ: ``error``; ``skip`` (keep the fresh
    init); ``slice`` (copy the overlapping leading slice, e.g. the known rows of a grown
    embedding table, keep the fresh init elsewhere).
    """
    if on_mismatch not in ("error", "skip", "slice"):
        raise CheckpointError(f"on_mismatch must be 'error', 'skip' or 'slice', not '{on_mismatch}'")
    state, where, digest = read_state(source)
    target = model.state_dict()
    state = _strip_prefix(state, set(target))
    report = LoadReport(where, digest)
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    mismatched = [k for k in target if k in state and tuple(state[k].shape) != tuple(target[k].shape)]
    if strict and (missing or unexpected):
        raise ShapeMismatchError(
            f"weights from {where} do not fit the model: "
            + (f"missing keys: {listing(missing)}; " if missing else "")
            + (f"unexpected keys: {listing(unexpected)}; " if unexpected else "")
            + "pass strict=False to load what fits"
        )
    if mismatched and on_mismatch == "error":
        details = "; ".join(
            f"{k}: source {list(state[k].shape)} vs model {list(target[k].shape)}" for k in mismatched
        )
        raise ShapeMismatchError(
            f"shapes differ for {len(mismatched)} key(s) loading {where}: {details}; "
            "use on_mismatch='skip' to keep their fresh init or 'slice' to copy the overlap"
        )
    for key, dest in target.items():
        if key in missing:
            report.results.append(KeyResult(key, "missing", None, tuple(dest.shape)))
            continue
        src = state[key]
        shapes = (tuple(src.shape), tuple(dest.shape))
        if key in mismatched:
            if on_mismatch == "slice" and src.dim() == dest.dim():
                region = tuple(slice(0, min(a, b)) for a, b in zip(*shapes))
                dest[region].copy_(src[region])
                report.results.append(KeyResult(key, "sliced", *shapes))
            else:
                report.results.append(KeyResult(key, "skipped", *shapes))
            continue
        dest.copy_(src)
        report.results.append(KeyResult(key, "loaded", *shapes))
    report.results += [KeyResult(k, "unexpected", tuple(state[k].shape), None) for k in unexpected]
    return report


def pickle_globals(path: Path) -> list[str]:
    """The Python globals a pickled file would import to load (read without running it)."""
    try:
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except (RuntimeError, ValueError, OSError, zipfile.BadZipFile) as exc:
        raise CorruptCheckpointError(f"{path} is not a readable PyTorch file ({exc})") from None


def _resolve_global(name: str) -> Any:
    import importlib

    module, _, attr = name.rpartition(".")
    try:
        obj: Any = importlib.import_module(module)
    except ImportError:
        # a nested name: import the longest importable prefix, then walk attributes
        parts = name.split(".")
        for i in range(len(parts) - 1, 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:i]))
                for p in parts[i:]:
                    obj = getattr(obj, p)
                return obj
            except (ImportError, AttributeError):
                continue
        raise CheckpointError(f"cannot import '{name}', which the file needs; run where its code is importable") from None
    try:
        return getattr(obj, attr)
    except AttributeError:
        raise CheckpointError(f"'{module}' has no '{attr}', which the file needs") from None


def convert_trusted_pickle(path: str | os.PathLike[str], out: str | os.PathLike[str], *, trust_pickle: bool) -> tuple[Path, list[str]]:
    """Turn a whole pickled model (``torch.save(model)``) into a ``.safetensors`` state dict.

    Unpickling runs code, so this is never implicit: without ``trust_pickle`` it only
    lists the globals the file would import and refuses. With it, exactly those globals
    are allow-listed for one ``torch.load(weights_only=True)`` call; only do this for a
    file you made yourself.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"'{path}' is not a file")
    needed = pickle_globals(path)
    if not trust_pickle:
        raise UnsafeCheckpointError(
            f"{path} would import {', '.join(needed) or 'nothing unusual'} when unpickled. "
            "Converting it runs that code: pass --trust-pickle only if you made this file yourself."
        )
    with torch.serialization.safe_globals([_resolve_global(n) for n in needed]):
        obj = torch.load(path, map_location="cpu", weights_only=True)
    state = obj.state_dict() if isinstance(obj, nn.Module) else _unwrap(obj, path)
    out = Path(out)
    if out.suffix != ".safetensors":
        raise CheckpointError(f"--out must end in .safetensors, got '{out.name}'")
    try:
        write_file_atomically(out, state_dict_bytes(state))
    except OSError as exc:
        raise CheckpointError(f"could not write '{out}': {exc.strerror or exc}") from None
    return out, needed
