"""How many clusters: a suggestion for K from a run's features, with its evidence in plain words.

The features are mapped by UMAP (n_neighbors 30, min_dist 0, 10-d: the run's own manifold when it
has one, else :func:`scan_core.method.manifold.fit_manifold`), k-means (:data:`KMEANS_STARTS`
starts) cuts the map into K groups for every K in ``[2, max_k]``, and the suggestion is the K whose
groups are the most clearly separated: the highest mean silhouette (Rousseeuw 1987; -1..1, 1 when
every image is far closer to its own group than to the next). Lowe et al. ("Rethinking zero-shot
clustering of images", arXiv 2406.02465, 2024) found the silhouette in such a UMAP space to track
clustering quality, and the scan stage scores its candidate partitions by it too
(:mod:`scan_core.method.candidates`). Measured (bench/RESULTS.md): digits 11 (10 classes), clip
art in 9 topics 9, 19 and 12 over three UMAP seeds (its separation is flat from 7 to 19), 4 animal
groups 3, where the earlier rule (k-means stability among halves, then the kNN graph's eigengap)
said 2, splitting line art from colour.

The evidence says, beside each K's separation, the next best K and what one more group would do:
k-means at K and at K + 1 compared, the K-group that the two new groups mostly come from.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .metrics import contingency

MAX_K = 30                  # the largest K tried
MAP_DIMS = 10               # dimensions of the UMAP embedding fitted when the run has none
KMEANS_POINTS = 20_000      # points k-means is fitted on at most (a random sample; the rest assigned)
KMEANS_STARTS = 10          # k-means starts per K, the best kept
SEPARATION_POINTS = 4_000   # points the separation is measured on at most (a random sample)
#: k-means runs on one thread: its OpenMP threads spin at barriers while other processes hold a core
#: (measured on 2 cores beside two busy processes: 1,000 10-d points at K = 20, 3.8 s on 2 threads,
#: 0.13 s on 1; 20,000 at K = 30, 27 s and 2.1 s), and on at most 20,000 10-d points one is enough.
KMEANS_THREADS = 1


@dataclass(frozen=True)
class KSuggestion:
    """A suggested number of clusters and its evidence: ``ks`` ``(M,)`` the K tried (2..max_k),
    ``separation`` ``(M,)`` the mean silhouette of k-means' K groups on the UMAP map (-1..1) for
    each, ``split`` the group of ``k`` that a ``k + 1``-th group splits: (its images, its images in
    each of the two new groups). ``separation`` and ``split`` are None for a suggestion written by
    an earlier version (other evidence, not kept): suggest again for this one."""

    k: int
    ks: np.ndarray
    separation: np.ndarray | None
    split: tuple[int, int, int] | None

    @property
    def earlier(self) -> bool:
        """Whether this is an earlier version's suggestion, without the evidence shown here."""
        return self.separation is None

    @property
    def runner_up(self) -> int | None:
        """The K with the second highest separation (None when only one K was tried, or earlier)."""
        if self.separation is None or len(self.ks) < 2:
            return None
        return int(self.ks[np.argsort(-self.separation, kind="stable")[1]])

    def separation_at(self, k: int) -> float:
        """The separation of the ``k`` groups."""
        if self.separation is None or k not in self.ks:
            raise ValueError(f"no separation for K = {k}")
        return float(self.separation[self.ks == k][0])

    def reason(self) -> str:
        """Why :attr:`k`, in plain words: how clearly the images separate at K, the next best K, and
        the group one more would split."""
        if self.separation is None:
            return (f"K = {self.k}: suggested by an earlier version from evidence not shown here; "
                    "suggest again to see how clearly the images separate at each K")
        text = (f"K = {self.k}: at {self.k} groups the images form the most clearly separated groups on a map "
                f"of their features (separation {self.separation_at(self.k):.2f} on a scale where 0 is none "
                "and 1 is perfect)")
        if self.runner_up is not None:
            text += f"; next best K = {self.runner_up} ({self.separation_at(self.runner_up):.2f})"
        if self.split is not None:
            size, first, second = self.split
            text += (f". A {ordinal(self.k + 1)} group would split a group of {size:,} images in two "
                     f"({first:,} and {second:,} of them)")
        return text

    def to_dict(self) -> dict:
        if self.separation is None:
            return {"k": self.k, "ks": self.ks.tolist()}
        return {"k": self.k, "ks": self.ks.tolist(), "separation": np.round(self.separation, 4).tolist(),
                "split": None if self.split is None else list(self.split)}

    @classmethod
    def from_dict(cls, data: dict) -> KSuggestion:
        """The suggestion ``to_dict`` wrote, or one an earlier version wrote (``stability`` and
        ``eigengaps`` instead of ``separation``: K kept, the evidence left out)."""
        ks = np.asarray(data["ks"], dtype=int)
        if "separation" not in data:
            return cls(int(data["k"]), ks, None, None)
        separation = np.asarray(data["separation"], dtype=float)
        if separation.shape != ks.shape:
            raise ValueError(f"separation {separation.shape} and ks {ks.shape} must have one value per K")
        split = data.get("split")
        if split is not None and len(split) != 3:
            raise ValueError(f"split must be (images, first part, second part), got {split}")
        return cls(int(data["k"]), ks, separation, None if split is None else (int(split[0]), int(split[1]), int(split[2])))


def ordinal(n: int) -> str:
    """``n`` as an English ordinal: 1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st."""
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def suggest_num_clusters(features: np.ndarray, embedding: np.ndarray | None = None, max_k: int = MAX_K,
                         seed: int = 0) -> KSuggestion:
    """Suggest K for ``features`` ``(N, D)`` (a run's features, L2-normalised as its encoder writes
    them: UMAP reads Euclidean distances), trying every K in ``[2, max_k]`` (at most ``N // 4``) on
    ``embedding`` ``(N, d)``, their UMAP embedding (the run's manifold), or one fitted here
    (:data:`MAP_DIMS`-d) when None."""
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits
    features = np.asarray(features)
    if features.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {features.shape}")
    if max_k < 2:
        raise ValueError(f"max_k must be at least 2, got {max_k}")
    n = len(features)
    max_k = min(max_k, n // 4)
    if max_k < 2:
        raise ValueError(f"{n} images are too few to suggest a number of clusters (need at least 8)")
    if embedding is None:
        from .manifold import fit_manifold
        embedding = fit_manifold(features, MAP_DIMS, seed)
    embedding = np.asarray(embedding, dtype=np.float32)
    if embedding.ndim != 2 or len(embedding) != n:
        raise ValueError(f"embedding must be (N = {n}, d), got shape {embedding.shape}")
    rng = np.random.default_rng(seed)
    fitted = embedding if n <= KMEANS_POINTS else embedding[rng.choice(n, KMEANS_POINTS, replace=False)]
    measured = embedding if n <= SEPARATION_POINTS else embedding[rng.choice(n, SEPARATION_POINTS, replace=False)]
    ks = np.arange(2, max_k + 1)
    with threadpool_limits(KMEANS_THREADS):
        models = [KMeans(int(k), n_init=KMEANS_STARTS, random_state=seed).fit(fitted) for k in [*ks, max_k + 1]]
        separation = np.array([separation_of(measured, model.predict(measured)) for model in models[:-1]])
        best = int(np.argmax(separation))
        split = group_split(models[best].predict(embedding), models[best + 1].predict(embedding))
    return KSuggestion(int(ks[best]), ks, separation, split)


def separation_of(points: np.ndarray, clusters: np.ndarray) -> float:
    """The mean silhouette of ``clusters`` ``(N,)`` of ``points`` ``(N, d)``; -1 when they are one group."""
    from sklearn.metrics import silhouette_score
    if len(np.unique(clusters)) < 2:
        return -1.0
    return float(silhouette_score(points, clusters))


def group_split(coarse: np.ndarray, fine: np.ndarray) -> tuple[int, int, int]:
    """The group of ``coarse`` ``(N,)`` (K groups) that ``fine`` ``(N,)`` (K + 1 groups) splits:
    every fine group is put under the coarse group most of its images come from; of the coarse
    groups with two fine groups or more under them, the one whose two largest parts hold the most
    images -> (its images, its images in each of those two parts, larger first)."""
    coarse, fine = np.asarray(coarse), np.asarray(fine)
    if coarse.shape != fine.shape or coarse.ndim != 1:
        raise ValueError(f"coarse and fine must be (N,) alike, got {coarse.shape} and {fine.shape}")
    if len(np.unique(fine)) <= len(np.unique(coarse)):
        raise ValueError("fine must have more groups than coarse")
    table = contingency(coarse, fine)
    parent = table.argmax(0)
    splits = []
    for group in np.unique(parent[table.sum(0) > 0]):
        parts = np.sort(table[group, (parent == group) & (table.sum(0) > 0)])[::-1]
        if len(parts) >= 2:
            splits.append((int(parts[0] + parts[1]), -int(group), int(table[group].sum()), int(parts[0]), int(parts[1])))
    _, _, size, first, second = max(splits)
    return size, first, second
