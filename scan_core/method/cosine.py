"""Cosine geometry that several stages share: L2 normalisation and spherical k-means.

SCAN mines neighbours by cosine similarity (section 2.1) and scores its pretext features with
k-means; a user's "split in two" is a spherical 2-means inside one cluster. All of them work on
L2-normalised rows, where the inner product is the cosine similarity.
"""
from __future__ import annotations

import numpy as np


def l2_normalize(features: np.ndarray) -> np.ndarray:
    """Rows of ``features`` ``(N, D)`` scaled to unit L2 norm, as a new C-contiguous float32 array
    (the input is left as it is; an all-zero row stays zero)."""
    x = np.asarray(features, dtype=np.float32)
    return np.ascontiguousarray(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12))


def spherical_kmeans(features: np.ndarray, k: int, seed: int = 0, niter: int = 50, restarts: int = 3) -> np.ndarray:
    """Cluster id ``(N,)`` of every row of ``features`` ``(N, D)``: faiss k-means on the
    L2-normalised rows with unit-norm centroids, best of ``restarts`` runs."""
    import faiss
    x = l2_normalize(features)
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"features must be a (N, D) array, got shape {x.shape}")
    if not 1 <= k <= len(x):
        raise ValueError(f"k must lie in [1, N = {len(x)}], got {k}")
    model = faiss.Kmeans(x.shape[1], k, niter=niter, nredo=restarts, seed=seed, spherical=True, verbose=False)
    model.train(x)
    return model.index.search(x, 1)[1].ravel()
