"""Arrays larger than memory: rows kept in memory-mapped ``.npy`` shards of one row count, written as
they come (:class:`ShardWriter`) and read back a batch at a time (:class:`ShardedArray`).

A run's image cache is one such array (:class:`~scan_core.data.images.ImageSet`): a folder of a
million photographs is decoded into shards while it is read, so that no more than one shard of
images (:data:`SHARD_BYTES`, or ``SCAN_EXPLORER_SHARD_MB``) is held in memory at once, and every
later stage reads the images it needs through the page cache.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..settings import env_float
from .artifacts import load_array, save_array

SHARD_ENV = "SCAN_EXPLORER_SHARD_MB"
SHARD_BYTES = 256 * 1024 ** 2  # bytes of rows a shard holds, unless SCAN_EXPLORER_SHARD_MB says otherwise


def shard_bytes() -> int:
    """The bytes a shard holds: ``SCAN_EXPLORER_SHARD_MB`` megabytes when set, else :data:`SHARD_BYTES`."""
    return int(env_float(SHARD_ENV, SHARD_BYTES / 1024 ** 2, "megabytes") * 1024 ** 2)


def rows_per_shard(row_shape: tuple[int, ...], dtype: np.dtype | type, limit: int | None = None) -> int:
    """Rows of ``row_shape`` and ``dtype`` that fit in ``limit`` bytes (:func:`shard_bytes`), at least one."""
    row = int(np.prod(row_shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    return max(1, (shard_bytes() if limit is None else limit) // max(1, row))


class ShardWriter:
    """Rows ``(B, *row_shape)`` appended in order; each full shard of ``rows`` rows is written to
    ``directory/<prefix>-<number>.npy`` atomically as soon as it is full, so at most one shard is
    held in memory. :meth:`close` writes the last, partial one and returns every file name."""

    def __init__(self, directory: Path, prefix: str, row_shape: tuple[int, ...], dtype: np.dtype | type,
                 rows: int | None = None):
        self.directory, self.prefix = Path(directory), prefix
        self.rows = rows_per_shard(row_shape, dtype) if rows is None else int(rows)
        if self.rows < 1:
            raise ValueError(f"a shard must hold at least one row, got {rows}")
        self.buffer = np.empty((self.rows, *row_shape), dtype=dtype)
        self.filled = 0
        self.names: list[str] = []

    def append(self, batch: np.ndarray) -> None:
        """Add ``batch`` ``(B, *row_shape)`` after the rows so far."""
        batch = np.asarray(batch)
        if batch.shape[1:] != self.buffer.shape[1:]:
            raise ValueError(f"rows of shape {batch.shape[1:]} do not fit shards of {self.buffer.shape[1:]}")
        start = 0
        while start < len(batch):
            take = min(len(batch) - start, self.rows - self.filled)
            self.buffer[self.filled:self.filled + take] = batch[start:start + take]
            self.filled, start = self.filled + take, start + take
            if self.filled == self.rows:
                self._flush()

    def _flush(self) -> None:
        name = f"{self.prefix}-{len(self.names):05d}.npy"
        save_array(self.directory / name, self.buffer[:self.filled])
        self.names.append(name)
        self.filled = 0

    def close(self) -> list[str]:
        """Write the rows not yet written; the shards' file names, in order."""
        if self.filled:
            self._flush()
        return list(self.names)


class ShardedArray:
    """A read-only ``(N, ...)`` array over memory-mapped shards (every one but the last of the same
    row count): ``len``, ``shape``, ``dtype``, ``ndim``, and indexing by an integer, a slice or an
    array of integers (or a boolean mask), which reads only the rows asked for into a new array."""

    def __init__(self, shards: list[np.ndarray]):
        if not shards:
            raise ValueError("a sharded array needs at least one shard")
        rows, tail, dtype = len(shards[0]), shards[0].shape[1:], shards[0].dtype
        for number, shard in enumerate(shards):
            if shard.shape[1:] != tail or shard.dtype != dtype:
                raise ValueError(f"shard {number} holds {shard.dtype} rows of {shard.shape[1:]}, "
                                 f"not {dtype} rows of {tail} as shard 0 does")
            if number < len(shards) - 1 and len(shard) != rows:
                raise ValueError(f"shard {number} holds {len(shard)} rows, not {rows} as shard 0 does")
        self.shards, self.rows = shards, max(1, rows)
        self.shape = (sum(len(shard) for shard in shards), *tail)
        self.dtype = dtype
        self.directory: Path | None = None  # where the shards are, and their names, when loaded
        self.names: list[str] = []

    @classmethod
    def load(cls, directory: Path, names: list[str]) -> ShardedArray:
        """The shards ``names`` in ``directory``, memory-mapped."""
        array = cls([load_array(Path(directory) / name, mmap=True) for name in names])
        array.directory, array.names = Path(directory).resolve(), list(names)
        return array

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        rest: tuple = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        if isinstance(key, (int, np.integer)):
            index = int(key) + (len(self) if key < 0 else 0)
            if not 0 <= index < len(self):
                raise IndexError(f"index {key} is out of bounds for {len(self)} rows")
            row = self.shards[index // self.rows][index % self.rows]
            return np.array(row[rest] if rest else row)
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            rows = self._contiguous(start, stop) if step == 1 else self._rows(np.arange(start, stop, step))
        else:
            picked = np.asarray(key)
            if picked.dtype == bool:
                if picked.shape != (len(self),):
                    raise IndexError(f"a boolean index must have {len(self)} entries, got {picked.shape}")
                picked = np.flatnonzero(picked)
            rows = self._rows(picked)
        return rows[(slice(None), *rest)] if rest else rows

    def _contiguous(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((max(0, stop - start), *self.shape[1:]), dtype=self.dtype)
        at = start
        while at < stop:
            shard, offset = divmod(at, self.rows)
            take = min(stop - at, len(self.shards[shard]) - offset)
            out[at - start:at - start + take] = self.shards[shard][offset:offset + take]
            at += take
        return out

    def _rows(self, index: np.ndarray) -> np.ndarray:
        if index.ndim != 1 or (len(index) and not np.issubdtype(index.dtype, np.integer)):
            raise IndexError(f"rows are indexed by a 1-d array of integers, got {index.dtype} {index.shape}")
        index = np.where(index < 0, index + len(self), index)
        if len(index) and (index.min() < 0 or index.max() >= len(self)):
            raise IndexError(f"an index is out of bounds for {len(self)} rows")
        out = np.empty((len(index), *self.shape[1:]), dtype=self.dtype)
        shard_of = index // self.rows
        for shard in np.unique(shard_of):
            mine = np.flatnonzero(shard_of == shard)
            out[mine] = self.shards[shard][index[mine] - shard * self.rows]
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = self[:]
        return whole if dtype is None else whole.astype(dtype)


Rows = np.ndarray | ShardedArray  # images a stage reads: in memory, or in shards
