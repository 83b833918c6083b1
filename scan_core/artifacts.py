"""Atomic, pickle-free artifact I/O for run directories.

Every file a run writes goes through here: the data is written to a temporary file in the same
directory, flushed to disk, then renamed over the target, so a reader (the app, a resumed job)
never sees a half-written artifact. Arrays are saved as ``.npy`` and always read back with
``allow_pickle=False``; a truncated or corrupt file raises :class:`CorruptArtifact` instead of
being trusted.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


class CorruptArtifact(RuntimeError):
    """An artifact exists but cannot be read back (truncated, wrong format)."""


def _atomic_write(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_array(path: Path, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` (.npy) atomically; object arrays are refused."""
    array = np.asarray(array)
    if array.dtype == object:
        raise ValueError(f"{path}: object arrays cannot be saved without pickle")
    _atomic_write(Path(path), lambda handle: np.save(handle, array, allow_pickle=False))


def load_array(path: Path, mmap: bool = False) -> np.ndarray:
    """Read a ``.npy`` written by :func:`save_array` (memory-mapped when ``mmap``)."""
    path = Path(path)
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (ValueError, OSError, EOFError) as error:
        raise CorruptArtifact(f"{path}: unreadable array ({error})") from error


def save_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically."""
    data = json.dumps(obj, indent=2, sort_keys=True, default=_json_default).encode()
    _atomic_write(Path(path), lambda handle: handle.write(data))


def load_json(path: Path) -> Any:
    """Read JSON written by :func:`save_json`; a corrupt file raises :class:`CorruptArtifact`."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CorruptArtifact(f"{path}: invalid JSON ({error})") from error


def save_bytes(path: Path, data: bytes) -> None:
    """Write raw bytes (e.g. a ``torch.save`` buffer) atomically."""
    _atomic_write(Path(path), lambda handle: handle.write(data))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
