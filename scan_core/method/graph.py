"""The mined neighbour graph as a sparse matrix: every image linked to its mined neighbours and
back. Labels spread over it in a refine (:mod:`scan_core.method.refine`)."""
from __future__ import annotations

import numpy as np
from scipy import sparse


def symmetric_graph(neighbors: np.ndarray) -> sparse.csr_matrix:
    """``A`` ``(N, N)`` float64: 1 where image ``j`` is among the ``neighbors`` ``(N, k)`` of image
    ``i`` or ``i`` among those of ``j``, else 0."""
    neighbors = np.asarray(neighbors)
    if neighbors.ndim != 2:
        raise ValueError(f"neighbors must be (N, k), got shape {neighbors.shape}")
    n, k = neighbors.shape
    graph = sparse.csr_matrix((np.ones(n * k), (np.repeat(np.arange(n), k), neighbors.ravel())), shape=(n, n))
    return ((graph + graph.T) > 0).astype(np.float64)


def normalized_graph(neighbors: np.ndarray) -> sparse.csr_matrix:
    """``S = D^-1/2 A D^-1/2`` ``(N, N)`` of :func:`symmetric_graph` (``D``: its degrees); the
    normalised Laplacian is ``I - S``."""
    graph = symmetric_graph(neighbors)
    scale = sparse.diags(1.0 / np.sqrt(np.asarray(graph.sum(1)).ravel()))
    return (scale @ graph @ scale).tocsr()
