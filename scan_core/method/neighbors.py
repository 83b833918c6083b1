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

from collections.abc import Iterator

import faiss
import numpy as np
from scipy import sparse

from ..config import EXACT_SEARCH_LIMIT
from .cosine import l2_normalize

HNSW_LINKS = 48                  # M: graph links per point (about 4 D + 8 M bytes a point; 32 missed 0.95 at 1M)
HNSW_SEARCH = 256                # efSearch: candidates kept while searching (at least k + 1)
RECALL_QUERIES = 1_000           # sampled queries :func:`search_recall` checks against exact search
GPU_EXACT_LIMIT = 10_000_000     # rows searched exactly on GPUs (5 GB of 128-d float32 to hold)


def faiss_gpus() -> int:
    """The GPUs faiss can search on: 0 with ``faiss-cpu``."""
    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


def search_kind(n: int, exact_limit: int = EXACT_SEARCH_LIMIT, gpus: int | None = None) -> str:
    """How :func:`mine_neighbors` searches ``n`` rows with ``gpus`` GPUs for faiss (None: as many as
    it has): ``"gpu"`` (exact, on the GPUs) up to :data:`GPU_EXACT_LIMIT` when there are any, else
    ``"exact"`` up to ``exact_limit``, else ``"hnsw"``."""
    if (faiss_gpus() if gpus is None else gpus) and n <= GPU_EXACT_LIMIT:
        return "gpu"
    return "exact" if n <= exact_limit else "hnsw"


def mine_neighbors(features: np.ndarray, k: int = 20, batch_size: int = 8192,
                   exact_limit: int = EXACT_SEARCH_LIMIT, links: int = HNSW_LINKS,
                   out: np.ndarray | None = None) -> np.ndarray:
    """Indices ``(N, k)`` of each row's ``k`` most cosine-similar other rows, most similar first:
    exact up to ``exact_limit`` rows, else approximate (HNSW; :func:`search_recall` says how close).

    Args:
        features: ``(N, D)`` float features (normalised here a batch at a time, not in place).
        k: neighbours per image, ``1 <= k < N``.
        exact_limit: the most rows searched exactly (0: always approximate).
        links: HNSW's M, the graph links of a point (more: higher recall, a slower build).
        out: an int64 array ``(N, k)`` to write the lists into and return (an on-disk one keeps
            no more than a batch of them in memory).
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
    for _, found in nearest(features, None, k + 1, batch_size, exact_limit, links):
        result[start:start + len(found)] = _drop_self(found, np.arange(start, start + len(found)), k)
        start += len(found)
    return result


def _normalised(rows: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """``rows`` ``(N, D)`` L2-normalised float32, ``batch_size`` rows at a time."""
    for start in range(0, len(rows), batch_size):
        yield np.ascontiguousarray(l2_normalize(np.asarray(rows[start:start + batch_size])), dtype=np.float32)


def nearest(base: np.ndarray, queries: np.ndarray | None, k: int, batch_size: int = 8192,
            exact_limit: int = EXACT_SEARCH_LIMIT, links: int = HNSW_LINKS) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The ``k`` most cosine-similar ``base`` rows ``(N, D)`` of each query ``(M, D)`` (``None``: the
    base rows themselves), ``batch_size`` queries at a time: ``(similarities, indices)``, each
    ``(B, k)``, most similar first. Exact up to ``exact_limit`` base rows, else on an HNSW graph of
    ``links`` links a point (:func:`search_kind`). The index holds the only whole copy of the rows
    (added and searched a batch at a time): about ``4 D + 8 links`` bytes a row for HNSW."""
    if links < 2:
        raise ValueError(f"links must be >= 2, got {links}")
    base = np.asarray(base)
    index: faiss.Index
    kind = search_kind(len(base), exact_limit)
    if kind == "hnsw":
        graph = faiss.IndexHNSWFlat(base.shape[1], links, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efSearch = max(HNSW_SEARCH, k)
        index = graph
    else:
        index = faiss.IndexFlatIP(base.shape[1])
        if kind == "gpu":  # the same exact search, on every GPU faiss has (rows sharded over them)
            index = faiss.index_cpu_to_all_gpus(index)
    for rows in _normalised(base, batch_size):
        index.add(rows)
    for batch in _normalised(base if queries is None else np.asarray(queries), batch_size):
        yield index.search(batch, k)


def search_recall(features: np.ndarray, neighbors: np.ndarray, queries: int = RECALL_QUERIES,
                  seed: int = 0, batch_size: int = 65536) -> float:
    """Recall@k of mined ``neighbors`` ``(N, k)``: the share of the exact ``k`` most cosine-similar
    other rows that they hold, over ``queries`` rows sampled at random (all rows when fewer), each
    searched exactly against all ``features`` ``(N, D)``, ``batch_size`` rows of them at a time
    (faiss's blockwise ground truth). 1.0 for an exact search, up to ties."""
    from faiss.contrib.exhaustive_search import knn_ground_truth
    features = np.asarray(features)
    if neighbors.ndim != 2 or len(neighbors) != len(features):
        raise ValueError(f"neighbors must be (N, k) for N = {len(features)} features, got shape {neighbors.shape}")
    if queries < 1:
        raise ValueError(f"queries must be >= 1, got {queries}")
    n, k = neighbors.shape
    rows = np.sort(np.random.default_rng(seed).choice(n, min(queries, n), replace=False))
    sample = next(_normalised(features[rows], len(rows)))
    _, found = knn_ground_truth(sample, _normalised(features, batch_size), k + 1, faiss.METRIC_INNER_PRODUCT,
                                ngpu=faiss_gpus())
    exact = _drop_self(found, rows, k)
    hits = [len(np.intersect1d(exact[i], neighbors[row])) for i, row in enumerate(rows)]
    return float(np.sum(hits) / exact.size)


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
