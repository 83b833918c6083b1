"""Atomic, pickle-free artifact I/O for run directories.

Every file a run writes goes through here: the data is written to a temporary file in the same
directory, flushed to disk, then renamed over the target, so a reader (the app, a resumed job)
never sees a half-written artifact. A failed write (disk full, no permission) removes the
temporary file, leaves the previous version of the target untouched and raises an ``OSError``
that names the target. Arrays are saved as ``.npy`` and always read back with
``allow_pickle=False``, torch files with ``weights_only=True``; a truncated or corrupt file raises
:class:`CorruptArtifact` instead of being trusted. torch is imported by the functions that need it,
so reading a run's arrays and JSON (the app) does not load it.

In a distributed run only rank 0 writes: on the other ranks :func:`set_writes` turns every write
here (and the run's events, :mod:`scan_core.engine.progress`) into nothing.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch


class CorruptArtifact(RuntimeError):
    """An artifact exists but cannot be read back (truncated, wrong format)."""


_writing = [True]


def set_writes(on: bool) -> None:
    """Whether this process writes run files (off on every rank of a distributed run but rank 0,
    :mod:`scan_core.engine.ranks`)."""
    _writing[0] = bool(on)


def writes() -> bool:
    """Whether this process writes run files (:func:`set_writes`)."""
    return _writing[0]


@contextmanager
def _replacing(path: Path) -> Iterator[str]:
    """The name of a temporary file beside ``path`` that becomes ``path`` when the block ends
    without an error, and is removed on an error (a half-written file never takes the name). An
    OSError names ``path``."""
    path, tmp = Path(path), None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        yield tmp
        os.replace(tmp, path)
    except OSError as error:
        raise OSError(error.errno, f"cannot write {path}: {error.strerror or error}") from error
    finally:
        if tmp is not None and os.path.exists(tmp):  # gone after a successful replace
            os.unlink(tmp)


@contextmanager
def atomic_file(path: Path) -> Iterator[IO[bytes]]:
    """A binary file that becomes ``path`` when the block ends without an error: a temporary file
    beside it until then, synced and renamed into place (:func:`_replacing`)."""
    with _replacing(path) as tmp, open(tmp, "wb") as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


def _atomic_write(path: Path, write) -> None:
    if _writing[0]:
        with atomic_file(path) as handle:
            write(handle)


def save_array(path: Path, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` (.npy) atomically; object arrays are refused."""
    array = np.asarray(array)
    if array.dtype == object:
        raise ValueError(f"{path}: object arrays cannot be saved without pickle")
    _atomic_write(Path(path), lambda handle: np.save(handle, array, allow_pickle=False))


def write_array(path: Path, shape: tuple[int, ...], dtype: np.dtype | type,
                fill: Callable[[np.ndarray], object]) -> np.ndarray:
    """An array ``shape`` of ``dtype`` that ``fill(out)`` writes straight into ``path`` (.npy), read
    back memory-mapped: rows are written as they are computed, so the whole array is never held in
    memory (the kernel's page cache holds what fits). Atomic as :func:`save_array`: ``out`` is a
    temporary file until ``fill`` returns. On a process that does not write (:func:`set_writes`),
    ``out`` is in memory and is returned."""
    path = Path(path)
    if not _writing[0]:
        out = np.empty(shape, dtype)
        fill(out)
        return out
    with _replacing(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        fill(out)
        out.flush()
        del out
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
    return load_array(path, mmap=True)


def scratch_array(directory: Path, shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
    """A writable array ``shape`` of ``dtype`` backed by a nameless temporary file in ``directory``
    (gone when the array is): for an intermediate result larger than memory needs to hold. In
    memory on a process that does not write (:func:`set_writes`): it leaves the run's folder alone."""
    if not _writing[0] or not np.prod(shape, dtype=np.int64):
        return np.empty(shape, dtype)
    with tempfile.TemporaryFile(dir=directory) as handle:
        return np.memmap(handle, dtype=dtype, mode="w+", shape=shape)


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


def read_json(path: Path, default: Any = None) -> Any:
    """:func:`load_json`, or ``default`` (an empty dict when None) when the file is missing or corrupt:
    for what a reader may find not yet written, or half gone."""
    try:
        return load_json(path)
    except (FileNotFoundError, CorruptArtifact):
        return {} if default is None else default


def save_bytes(path: Path, data: bytes) -> None:
    """Write raw bytes (e.g. a ``torch.save`` buffer) atomically."""
    _atomic_write(Path(path), lambda handle: handle.write(data))


def save_torch(path: Path, obj: Any) -> None:
    """``torch.save`` ``obj`` (tensors, dicts, lists, numbers, strings) to ``path`` atomically."""
    import torch
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    save_bytes(path, buffer.getvalue())


def load_torch(path: Path, device: str | torch.device = "cpu") -> Any:
    """Read a file written by :func:`save_torch` with ``weights_only=True`` (no pickled code is
    run); a truncated, corrupt or code-carrying file raises :class:`CorruptArtifact`."""
    import torch
    path = Path(path)
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise
    except (RuntimeError, ValueError, OSError, EOFError, pickle.UnpicklingError) as error:
        raise CorruptArtifact(f"{path}: unreadable torch file ({error})") from error


class Checkpoint:
    """The state of one training loop, saved after every epoch so that a killed run continues
    from its last finished epoch instead of starting the stage over.

    Holds the model and optimizer state, the number of finished epochs, the random state
    (torch's, CUDA's when in use, and that of the numpy generators the loop passes in) and what else
    the loop keeps across epochs (``extra``: tensors, numbers, lists and dicts of them). Written
    atomically with :func:`save_torch`, read with :func:`load_torch`. A missing, unreadable or
    non-matching file counts as no checkpoint; :meth:`clear` deletes it once the stage is done.
    """

    def __init__(self, path: Path, on_resume: Callable[[int], None] | None = None):
        self.path = Path(path)
        self.on_resume = on_resume
        self.extra = None  # the ``extra`` of the checkpoint resumed from

    def resume(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               *generators: np.random.Generator) -> int:
        """Load the saved state into the arguments; return the epochs finished (0 if none)."""
        import torch
        try:
            saved = load_torch(self.path)
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            for generator, state in zip(generators, saved["numpy_rng"], strict=True):
                generator.bit_generator.state = json.loads(state)
            torch.set_rng_state(saved["torch_rng"])
            if saved["cuda_rng"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(saved["cuda_rng"])
            epoch = int(saved["epoch"])
            self.extra = saved.get("extra")
        except (FileNotFoundError, CorruptArtifact, KeyError, RuntimeError, TypeError, ValueError):
            return 0  # nothing usable: the loop starts from scratch
        if self.on_resume:
            self.on_resume(epoch)
        return epoch

    def save(self, epoch: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
             *generators: np.random.Generator, extra: Any = None) -> None:
        """Record that ``epoch`` epochs are finished, with the state to continue from there."""
        import torch
        save_torch(self.path, {
            "epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "numpy_rng": [json.dumps(g.bit_generator.state) for g in generators],
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [], "extra": extra})

    def clear(self) -> None:
        """Delete the checkpoint, and the half-written copy a kill during :meth:`save` left beside it."""
        if not writes():
            return
        self.path.unlink(missing_ok=True)
        for unfinished in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            unfinished.unlink(missing_ok=True)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
