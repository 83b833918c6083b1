"""Mining stage: nearest neighbours of every image in feature space (SCAN, step 2).

Cosine similarity = inner product of L2-normalised features, searched with faiss: exactly
(``IndexFlatIP``, whose cost grows with N²) up to :data:`~scan_core.config.EXACT_SEARCH_LIMIT` images, above it on a graph
index (HNSW, Malkov & Yashunin 2018: ``IndexHNSWFlat``, no training, about N log N), whose recall
against exact search :func:`search_recall` measures on sampled queries (``python
bench/bench_scale.py`` times both). Where faiss has GPUs (the ``faiss-gpu`` package on a CUDA machine),
every search up to :data:`GPU_EXACT_LIMIT` rows is exact, on the GPUs. Neighbour lists from several feature spaces can be fused by
reciprocal-rank fusion, which keeps the neighbours that the spaces agree on at the top.
"""
from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import faiss
import numpy as np
from scipy import sparse

from ..config import EXACT_SEARCH_LIMIT, INDEX_MEMORY
from .cosine import l2_normalize

HNSW_LINKS = 48                  # M: graph links per point (about 4 D + 8 M bytes a point; 32 missed 0.95 at 1M)
HNSW_SEARCH = 256                # efSearch: candidates kept while searching (at least k + 1)
RECALL_QUERIES = 1_000           # sampled queries :func:`search_recall` checks against exact search
GPU_EXACT_LIMIT = 10_000_000     # rows searched exactly on GPUs (5 GB of 128-d float32 to hold)
IVF_PROBES = 32                  # lists an on-disk index searches for each query
IVF_TRAIN = 64                   # rows a list its centres are trained on (faiss asks for 39 at least)
IVF_RECALL = 0.95                # the recall@k on sampled rows an on-disk index searches enough lists for


def faiss_gpus() -> int:
    """The GPUs faiss can search on: 0 with ``faiss-cpu``."""
    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


def index_bytes(n: int, dim: int, links: int = HNSW_LINKS) -> int:
    """About the memory an HNSW graph of ``n`` rows of ``dim`` float32 takes: the rows, ``2 links``
    ids each at its base level and a tenth more for the levels above."""
    return int(1.1 * n * (4 * dim + 8 * links))


def search_kind(n: int, exact_limit: int = EXACT_SEARCH_LIMIT, gpus: int | None = None, dim: int = 0,
                memory: int = INDEX_MEMORY, links: int = HNSW_LINKS) -> str:
    """How :func:`mine_neighbors` searches ``n`` rows of ``dim`` with ``gpus`` GPUs for faiss (None:
    as many as it has): ``"gpu"`` (exact, on the GPUs) up to :data:`GPU_EXACT_LIMIT` when there are
    any, else ``"exact"`` up to ``exact_limit``, else ``"hnsw"`` when its graph
    (:func:`index_bytes`) fits in ``memory`` bytes, else ``"ivf-disk"``: inverted lists in a file."""
    if (faiss_gpus() if gpus is None else gpus) and n <= GPU_EXACT_LIMIT:
        return "gpu"
    if n <= exact_limit:
        return "exact"
    return "hnsw" if index_bytes(n, dim, links) <= memory else "ivf-disk"


def mine_neighbors(features: np.ndarray, k: int = 20, batch_size: int = 8192,
                   exact_limit: int = EXACT_SEARCH_LIMIT, links: int = HNSW_LINKS,
                   out: np.ndarray | None = None, memory: int = INDEX_MEMORY,
                   scratch: Path | None = None) -> np.ndarray:
    """Indices ``(N, k)`` of each row's ``k`` most cosine-similar other rows, most similar first:
    exact up to ``exact_limit`` rows, else approximate (:func:`search_kind`; :func:`search_recall`
    says how close).

    Args:
        features: ``(N, D)`` float features (normalised here a batch at a time, not in place).
        k: neighbours per image, ``1 <= k < N``.
        exact_limit: the most rows searched exactly (0: always approximate).
        links: HNSW's M, the graph links of a point (more: higher recall, a slower build).
        out: an int64 array ``(N, k)`` to write the lists into and return (an on-disk one keeps
            no more than a batch of them in memory).
        memory: the most bytes an HNSW graph may take; a larger index keeps its lists in a file
            in ``scratch`` (the system's temporary folder when None), deleted once searched.
    """
    features = np.asarray(features)
    if features.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {features.shape}")
    n = len(features)
    if not 1 <= k < n:
        raise ValueError(f"k must satisfy 1 <= k < N = {n}, got {k}")
    if exact_limit < 0:
        raise ValueError(f"exact_limit must be >= 0, got {exact_limit}")
    result = np.empty((n, k), dtype=np.int64) if out is None else out
    if result.shape != (n, k):
        raise ValueError(f"out must be ({n}, {k}), got {result.shape}")
    start = 0
    for _, found in nearest(features, None, k + 1, batch_size, exact_limit, links, memory, scratch):
        result[start:start + len(found)] = _drop_self(found, np.arange(start, start + len(found)), k)
        start += len(found)
    return result


def _normalised(rows: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """``rows`` ``(N, D)`` L2-normalised float32, ``batch_size`` rows at a time."""
    for start in range(0, len(rows), batch_size):
        yield l2_normalize(rows[start:start + batch_size])


def nearest(base: np.ndarray, queries: np.ndarray | None, k: int, batch_size: int = 8192,
            exact_limit: int = EXACT_SEARCH_LIMIT, links: int = HNSW_LINKS, memory: int = INDEX_MEMORY,
            scratch: Path | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The ``k`` most cosine-similar ``base`` rows ``(N, D)`` of each query ``(M, D)`` (``None``: the
    base rows themselves), ``batch_size`` queries at a time: ``(similarities, indices)``, each
    ``(B, k)``, most similar first, on the index :func:`search_kind` names. The rows are added and
    searched a batch at a time: an HNSW graph holds the only whole copy (:func:`index_bytes`), an
    on-disk one none (:func:`disk_index`)."""
    if links < 2:
        raise ValueError(f"links must be >= 2, got {links}")
    base = np.asarray(base)
    kind = search_kind(len(base), exact_limit, dim=base.shape[1], memory=memory, links=links)
    with tempfile.TemporaryDirectory(dir=scratch, prefix="index-") as folder:
        index: faiss.Index
        if kind == "ivf-disk":
            index = disk_index(base, Path(folder) / "lists.ivfdata", k, batch_size)
        elif kind == "hnsw":
            graph = faiss.IndexHNSWFlat(base.shape[1], links, faiss.METRIC_INNER_PRODUCT)
            graph.hnsw.efSearch = max(HNSW_SEARCH, k)
            index = graph
        else:
            index = faiss.IndexFlatIP(base.shape[1])
            if kind == "gpu":  # the same exact search, on every GPU faiss has (rows sharded over them)
                index = faiss.index_cpu_to_all_gpus(index)
        if kind != "ivf-disk":
            for rows in _normalised(base, batch_size):
                index.add(rows)
        for batch in _normalised(base if queries is None else np.asarray(queries), batch_size):
            yield index.search(batch, k)


def disk_index(base: np.ndarray, path: Path, k: int, batch_size: int = 8192, seed: int = 0) -> faiss.IndexIVFFlat:
    """An inverted-file index of the L2-normalised ``base`` rows ``(N, D)`` whose lists are a memory-mapped
    file at ``path`` (faiss ``OnDiskInvertedLists``): ``4 sqrt(N)`` lists (the faiss guidelines'
    lower end) trained on :data:`IVF_TRAIN` rows a list. It searches the :data:`IVF_PROBES` lists
    nearest a query, twice as many until the ``k`` it finds for :data:`RECALL_QUERIES` sampled rows
    hold :data:`IVF_RECALL` of their exact ``k`` (or it searches every list). In memory it holds
    the lists' centres and a batch of rows; the rows are in the file (the page cache)."""
    n, dim = base.shape
    lists_count = max(1, min(int(4 * np.sqrt(n)), n // IVF_TRAIN))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists_count, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(seed)
    index.train(l2_normalize(base[np.sort(rng.choice(n, min(n, IVF_TRAIN * lists_count), replace=False))]))
    lists = faiss.OnDiskInvertedLists(lists_count, index.code_size, str(path))
    index.replace_invlists(lists, True)
    lists.thisown = False  # type: ignore[attr-defined]  # SWIG ownership: the index frees them
    with _c_output_muted():  # faiss prints a line each time it grows the file
        lists.update_totsize(2 * n * (index.code_size + 8))
        for rows in _normalised(base, batch_size):
            index.add(rows)
    queries, exact = _exact_nearest(base, np.sort(rng.choice(n, min(n, RECALL_QUERIES), replace=False)), k)
    index.nprobe = min(IVF_PROBES, lists_count)
    while index.nprobe < lists_count:
        if _recall(index.search(queries, k)[1], exact) >= IVF_RECALL:
            break
        index.nprobe = min(2 * index.nprobe, lists_count)
    return index


@contextmanager
def _c_output_muted() -> Iterator[None]:
    """Standard output closed to C code (faiss's ``printf``) for the block."""
    import ctypes
    flush = ctypes.CDLL(None).fflush
    sys.stdout.flush()
    saved, quiet = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(quiet, 1)
        yield
    finally:
        flush(None)  # what C buffered goes to the null device
        os.dup2(saved, 1)
        os.close(saved)
        os.close(quiet)


def search_recall(features: np.ndarray, neighbors: np.ndarray, queries: int = RECALL_QUERIES,
                  seed: int = 0, batch_size: int = 65536) -> float:
    """Recall@k of mined ``neighbors`` ``(N, k)``: the share of the exact ``k`` most cosine-similar
    other rows that they hold, over ``queries`` rows sampled at random (all rows when fewer), each
    searched exactly against all ``features`` ``(N, D)`` (:func:`_exact_nearest`). 1.0 for an exact
    search, up to ties."""
    features = np.asarray(features)
    if neighbors.ndim != 2 or len(neighbors) != len(features):
        raise ValueError(f"neighbors must be (N, k) for N = {len(features)} features, got shape {neighbors.shape}")
    if queries < 1:
        raise ValueError(f"queries must be >= 1, got {queries}")
    n, k = neighbors.shape
    rows = np.sort(np.random.default_rng(seed).choice(n, min(queries, n), replace=False))
    exact = _drop_self(_exact_nearest(features, rows, k + 1, batch_size)[1], rows, k)
    return _recall(neighbors[rows], exact)


def _exact_nearest(base: np.ndarray, rows: np.ndarray, k: int, batch_size: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """``(queries, indices)``: the ``rows`` of ``base`` ``(N, D)`` L2-normalised ``(M, D)`` and the
    exact ``k`` most cosine-similar rows of each ``(M, k)`` (itself among them), ``base`` read
    ``batch_size`` rows at a time (faiss's blockwise ground truth)."""
    from faiss.contrib.exhaustive_search import knn_ground_truth
    queries = l2_normalize(base[rows])
    _, found = knn_ground_truth(queries, _normalised(base, batch_size), k, faiss.METRIC_INNER_PRODUCT, ngpu=faiss_gpus())
    return queries, found


def _recall(found: np.ndarray, exact: np.ndarray) -> float:
    """The share of the ``exact`` ``(M, k)`` indices that ``found`` ``(M, k')`` holds, row by row."""
    return float(sum(len(np.intersect1d(a, b)) for a, b in zip(found, exact)) / exact.size)


def _drop_self(found: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Remove each row's own index (wherever duplicates put it) and keep ``k`` columns."""
    not_self = found != rows[:, None]
    # rows where self was not returned (exact duplicates crowding it out): drop the last column
    not_self[not_self.all(1), -1] = False
    return found[not_self].reshape(len(found), k)


def fuse_neighbors(neighbor_lists: list[np.ndarray], k: int, rank_offset: float = 10.0) -> np.ndarray:
    """Reciprocal-rank fusion of several ``(N, k_i)`` neighbour lists into one ``(N, k)`` list.

    Each candidate scores ``sum_i 1 / (rank_offset + rank_i)`` over the lists that contain it;
    ties keep the earlier candidate.
    """
    if not neighbor_lists:
        raise ValueError("fuse_neighbors needs at least one neighbour list")
    n = len(neighbor_lists[0])
    if any(len(lst) != n for lst in neighbor_lists):
        raise ValueError("all neighbour lists must have the same number of rows")
    rows = np.concatenate([np.repeat(np.arange(n), lst.shape[1]) for lst in neighbor_lists])
    cols = np.concatenate([lst.ravel() for lst in neighbor_lists])
    scores = np.concatenate([np.tile(1.0 / (rank_offset + np.arange(lst.shape[1])), n) for lst in neighbor_lists])
    summed = sparse.csr_matrix((scores, (rows, cols)), shape=(n, n))  # duplicates are summed
    lengths = np.diff(summed.indptr)
    if lengths.min() < k:
        raise ValueError(f"fewer than k={k} distinct neighbours across the lists")
    width = lengths.max()
    slot = np.arange(summed.nnz) - np.repeat(summed.indptr[:-1], lengths)
    candidates = np.zeros((n, width), dtype=np.int64)
    padded = np.full((n, width), -np.inf)
    candidates[np.repeat(np.arange(n), lengths), slot] = summed.indices
    padded[np.repeat(np.arange(n), lengths), slot] = summed.data
    best = np.argsort(-padded, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(candidates, best, 1)


def neighbor_agreement(clusters: np.ndarray, neighbors: np.ndarray) -> float:
    """Share of (image, mined neighbour) pairs ``neighbors`` ``(N, k)`` whose ``clusters`` ``(N,)``
    agree: how consistent an assignment is with the neighbours SCAN trained on (no labels)."""
    clusters = np.asarray(clusters)
    if neighbors.ndim != 2 or len(neighbors) != len(clusters):
        raise ValueError(f"neighbors must be (N, k) for N = {len(clusters)} clusters, got shape {neighbors.shape}")
    return float((clusters[neighbors] == clusters[:, None]).mean())


def neighbor_purity(neighbors: np.ndarray, labels: np.ndarray) -> float:
    """Mean share of neighbours ``(N, k)`` that carry their anchor's label (needs labels)."""
    labels = np.asarray(labels)
    return float((labels[neighbors] == labels[:, None]).mean())
