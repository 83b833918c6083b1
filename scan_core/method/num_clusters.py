"""How many clusters: a suggestion for K from a run's points and mined neighbours, with its evidence.

Two label-free signals, over every K in ``[2, max_k]``:

- **Stability** (Ben-Hur, Elisseeff & Guyon, PSB 2002; Lange et al., Neural Computation 2004):
  k-means fitted on two random halves of the points, every point assigned by each, and the two
  partitions compared by the adjusted Rand index; the mean over a few pairs of halves. Groups that
  are really there are found again from any half; a K that cuts through a group cuts it differently
  each time.
- **Eigengap** (von Luxburg, Statistics and Computing 2007, §8.3): the gap ``λ_{K+1} - λ_K`` between
  consecutive eigenvalues of the normalised Laplacian ``I - D^-1/2 A D^-1/2`` of the symmetrised
  mined kNN graph. K groups with few edges between them give K eigenvalues near 0 and then a jump.

On their own both mislead (measured: bench/RESULTS.md): stability favours coarse splits (K = 2 or 3 of
superclasses are the most stable), the eigengap of a kNN graph of many thousand images is tiny and
noisy and often names a fine K (14 on Fashion-MNIST). The suggestion is the K with the largest
eigengap among those whose stability is within :data:`STABILITY_TOLERANCE` of the most stable.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .graph import normalized_graph

MAX_K = 30                  # the largest K tried
GRAPH_NEIGHBORS = 10        # neighbours per image in the graph whose spectrum is read
STABILITY_POINTS = 20_000   # points the stability is measured on at most (a random sample)
STABILITY_DIMS = 20         # PCA components of the L2-normalised points k-means runs on
STABILITY_PAIRS = 5         # pairs of random halves per K
STABILITY_TOLERANCE = 0.02  # a K this close to the most stable one is as stable


@dataclass(frozen=True)
class KSuggestion:
    """A suggested number of clusters and its evidence: ``ks`` ``(M,)`` the K tried (2..max_k),
    ``stability`` ``(M,)`` the mean ARI of two halves' k-means for each, ``eigengaps`` ``(M,)`` the
    gap after the K-th eigenvalue, ``eigenvalues`` ``(max_k + 1,)`` the smallest of the normalised
    Laplacian, ascending."""

    k: int
    ks: np.ndarray
    stability: np.ndarray
    eigengaps: np.ndarray
    eigenvalues: np.ndarray

    @property
    def stable(self) -> np.ndarray:
        """``(M,)`` bool: the K as stable as the most stable one (the candidates)."""
        return self.stability >= self.stability.max() - STABILITY_TOLERANCE

    def reason(self) -> str:
        """Why :attr:`k`, in words: the stable candidates, and the K with a larger eigengap that were
        passed over for being less stable."""
        candidates = ", ".join(str(k) for k in self.ks[self.stable])
        chosen = self.eigengaps[self.ks == self.k][0]
        text = (f"K = {self.k}: among the most stable K ({candidates}: two halves' k-means agree at ARI "
                f"{self.stability[self.stable].min():.2f} or more), the largest eigengap of the mined neighbour "
                f"graph ({chosen:.3g})")
        larger = (self.eigengaps > chosen) & ~self.stable
        if larger.any():
            passed = self.ks[larger][np.argmax(self.eigengaps[larger])]
            text += (f". K = {passed} has a larger eigengap ({self.eigengaps[self.ks == passed][0]:.3g}) but is less "
                     f"stable (ARI {self.stability[self.ks == passed][0]:.2f})")
        return text

    def to_dict(self) -> dict:
        return {"k": self.k, "ks": self.ks.tolist(), "stability": np.round(self.stability, 4).tolist(),
                "eigengaps": np.round(self.eigengaps, 6).tolist(), "eigenvalues": np.round(self.eigenvalues, 6).tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> KSuggestion:
        return cls(int(data["k"]), np.asarray(data["ks"]), np.asarray(data["stability"], dtype=float),
                   np.asarray(data["eigengaps"], dtype=float), np.asarray(data["eigenvalues"], dtype=float))


def suggest_num_clusters(points: np.ndarray, neighbors: np.ndarray, max_k: int = MAX_K, seed: int = 0) -> KSuggestion:
    """Suggest K for ``points`` ``(N, D)`` (the space the heads learn on) with their mined
    ``neighbors`` ``(N, k)`` (indices, most similar first), trying every K in ``[2, max_k]``."""
    points, neighbors = np.asarray(points), np.asarray(neighbors)
    if points.ndim != 2 or neighbors.ndim != 2 or len(points) != len(neighbors):
        raise ValueError(f"points (N, D) and neighbors (N, k) must have as many rows, got {points.shape} and {neighbors.shape}")
    if max_k < 2:
        raise ValueError(f"max_k must be at least 2, got {max_k}")
    max_k = min(max_k, len(points) // 4)
    if max_k < 2:
        raise ValueError(f"{len(points)} images are too few to suggest a number of clusters (need at least 8)")
    ks = np.arange(2, max_k + 1)
    eigenvalues = laplacian_spectrum(neighbors[:, :GRAPH_NEIGHBORS], max_k + 1, seed)
    eigengaps = np.diff(eigenvalues)[ks - 1]        # eigenvalues[K] - eigenvalues[K - 1]: after the K-th
    stability = clustering_stability(points, ks, seed)
    stable = stability >= stability.max() - STABILITY_TOLERANCE
    k = int(ks[stable][np.argmax(eigengaps[stable])])
    return KSuggestion(k, ks, stability, eigengaps, eigenvalues)


def laplacian_spectrum(neighbors: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """The ``count`` smallest eigenvalues ``(count,)``, ascending, of the normalised Laplacian of the
    graph that links every image to its ``neighbors`` ``(N, k)`` (and back: symmetrised, unweighted)."""
    from scipy.sparse.linalg import eigsh
    n = len(neighbors)
    if not 1 <= count < n:
        raise ValueError(f"count must lie in [1, N = {n}), got {count}")
    graph = normalized_graph(neighbors)
    if n <= 1000:  # dense: exact and fast
        values = np.linalg.eigvalsh(graph.toarray())[::-1][:count]
    else:          # the largest of D^-1/2 A D^-1/2 are 1 - the smallest of the Laplacian
        start = np.random.default_rng(seed).standard_normal(n)
        values = np.sort(eigsh(graph, k=count, which="LA", tol=1e-5, v0=start)[0])[::-1]
    return np.clip(1.0 - values, 0.0, 2.0)


def clustering_stability(points: np.ndarray, ks: np.ndarray, seed: int = 0) -> np.ndarray:
    """For every K in ``ks``, the mean adjusted Rand index ``(len(ks),)`` between the partitions of
    (a sample of at most :data:`STABILITY_POINTS` of) ``points`` ``(N, D)`` by k-means fitted on two
    random halves, over :data:`STABILITY_PAIRS` pairs of halves."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.metrics import adjusted_rand_score

    from .cosine import l2_normalize
    rng = np.random.default_rng(seed)
    points = l2_normalize(np.asarray(points, dtype=np.float32))
    if len(points) > STABILITY_POINTS:
        points = points[rng.choice(len(points), STABILITY_POINTS, replace=False)]
    dims = min(STABILITY_DIMS, *points.shape)
    points = PCA(dims, random_state=seed).fit_transform(points) if dims < points.shape[1] else points
    half = len(points) // 2
    result = []
    for k in ks:
        agreement = []
        for pair in range(STABILITY_PAIRS):
            a, b = (KMeans(int(k), n_init=1, random_state=seed + 2 * pair + side).fit(
                points[rng.choice(len(points), half, replace=False)]).predict(points) for side in (0, 1))
            agreement.append(adjusted_rand_score(a, b))
        result.append(np.mean(agreement))
    return np.asarray(result)
