"""Candidate partitions and the label-free choice among them.

The heads are one partition of the images; standard clusterings of the features the heads learn on
are others, and on frozen features of semantic colour images they are as good or better
(bench/RESULTS.md, "Heads' objectives"). The scan stage scores every candidate without labels and
keeps the best:

- ``k-means``: spherical k-means on the centred features;
- ``UMAP + k-means``: k-means on a UMAP embedding of the features (n_neighbors 30, min_dist 0, 10-d,
  :func:`scan_core.method.manifold.fit_manifold`; the run's own manifold when it has one);
- ``UMAP + Ward``: Ward's agglomerative clustering of that embedding (Lowe et al., "Rethinking
  zero-shot clustering of images", arXiv 2406.02465, 2024), fitted on :data:`WARD_SAMPLE` images at
  most, the others joining the nearest cluster mean.

Each candidate ``(N,)`` is scored without labels (:class:`CandidateScore`): the share of mined
neighbour pairs it keeps together (what SCAN's loss maximises), the same corrected for chance (the
agreement its cluster sizes would give at random), its silhouette in the UMAP embedding (which Lowe
et al. found to track clustering quality) and its agreement (adjusted Rand index) with the other
candidates. :func:`choose_candidate` keeps the candidate that keeps the most neighbour pairs
together, of those that use the most clusters, when it keeps clearly more than the heads (on digits
and the generated colour sets the standard clusterings tie the heads' agreement within 0.001 and are
worse; on the clip-art animals they keep 0.02-0.07 more and are better): the silhouette and the agreement with the others
favour the partitions made in the UMAP embedding, also where the heads are better (digits, the
clip-art topics), and their sum of ranks with the neighbour agreement picked worse than it alone
(``bench/bench_pipeline.py`` reports how often the choice is within 0.02 of the best candidate,
bench/RESULTS.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .confidence import feature_lift
from .cosine import spherical_kmeans
from .neighbors import neighbor_agreement

PEER_LIMIT = 50_000        # images up to which the standard clusterings are candidates (UMAP and k-means time)
WARD_SAMPLE = 5_000        # images Ward is fitted on at most (its memory grows with the square)
SILHOUETTE_SAMPLE = 4_000  # images the silhouette is measured on at most
MARGIN = 0.01             # the share of mined pairs a peer must keep together beyond the heads' to replace them
HEADS = "SCAN heads"
PEERS = ("k-means", "UMAP + k-means", "UMAP + Ward")


@dataclass(frozen=True)
class CandidateScore:
    """One candidate's label-free scores: ``neighbor_agreement`` (share of mined pairs in one
    cluster), ``lift`` (the same corrected for chance: ``(a - c) / (1 - c)``, ``c`` the sum of the
    squared cluster shares, :func:`scan_core.method.confidence.feature_lift`), ``silhouette`` (in
    the UMAP embedding, -1..1), ``consensus`` (mean adjusted Rand index with the other candidates),
    its ``clusters_used`` (non-empty clusters) and, with labels only, its ``acc`` (reported, never
    used to choose)."""

    name: str
    neighbor_agreement: float
    lift: float
    silhouette: float
    consensus: float
    clusters_used: int
    acc: float | None = None

    def to_json(self) -> dict:
        values = {"name": self.name, "neighbor_agreement": round(self.neighbor_agreement, 4), "lift": round(self.lift, 4),
                  "silhouette": round(self.silhouette, 4), "consensus": round(self.consensus, 4),
                  "clusters_used": self.clusters_used}
        return values if self.acc is None else {**values, "acc": round(self.acc, 4)}


def peer_partitions(features: np.ndarray, embedding: np.ndarray, num_clusters: int, seed: int = 0) -> dict[str, np.ndarray]:
    """The standard clusterings of :data:`PEERS`: ``features`` ``(N, D)`` and their UMAP ``embedding``
    ``(N, d)`` -> {name: cluster ids ``(N,)``}."""
    from sklearn.cluster import AgglomerativeClustering, KMeans
    features, embedding = np.asarray(features, dtype=np.float32), np.asarray(embedding, dtype=np.float32)
    if features.ndim != 2 or embedding.ndim != 2 or len(features) != len(embedding):
        raise ValueError(f"features (N, D) and embedding (N, d) must have as many rows, got {features.shape} "
                         f"and {embedding.shape}")
    if not 2 <= num_clusters < len(features):
        raise ValueError(f"num_clusters must lie in [2, N = {len(features)}), got {num_clusters}")
    found = {"k-means": spherical_kmeans(features - features.mean(0), num_clusters, seed),
             "UMAP + k-means": KMeans(num_clusters, n_init=10, random_state=seed).fit_predict(embedding)}
    n = len(embedding)
    fitted = np.arange(n) if n <= WARD_SAMPLE else np.random.default_rng(seed).choice(n, WARD_SAMPLE, replace=False)
    ward = AgglomerativeClustering(num_clusters, linkage="ward").fit_predict(embedding[fitted])
    means = np.stack([embedding[fitted][ward == c].mean(0) for c in range(num_clusters)])
    found["UMAP + Ward"] = ((embedding[:, None, :] - means[None]) ** 2).sum(2).argmin(1)
    found["UMAP + Ward"][fitted] = ward
    return found


def score_candidates(candidates: dict[str, np.ndarray], neighbors: np.ndarray, embedding: np.ndarray,
                     labels: np.ndarray | None = None, seed: int = 0) -> list[CandidateScore]:
    """Every candidate's :class:`CandidateScore`: ``candidates`` {name: ``(N,)``}, the mined
    ``neighbors`` ``(N, k)``, the UMAP ``embedding`` ``(N, d)``; ``labels`` ``(N,)`` only to report ACC."""
    from sklearn.metrics import adjusted_rand_score, silhouette_score

    from .metrics import hungarian_accuracy
    if len(candidates) < 2:
        raise ValueError(f"a choice needs at least two candidates, got {len(candidates)}")
    n = len(embedding)
    if any(len(c) != n for c in candidates.values()):
        raise ValueError(f"every candidate must assign all {n} images")
    sample = np.random.default_rng(seed).choice(n, min(n, SILHOUETTE_SAMPLE), replace=False)
    names = list(candidates)
    ari = np.ones((len(names), len(names)))
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            ari[i, j] = ari[j, i] = adjusted_rand_score(candidates[names[i]], candidates[names[j]])
    scores = []
    for i, name in enumerate(names):
        clusters = np.asarray(candidates[name])
        used = len(np.unique(clusters))
        silhouette = -1.0
        if len(np.unique(clusters[sample])) > 1:
            silhouette = float(silhouette_score(embedding[sample], clusters[sample]))
        scores.append(CandidateScore(name, neighbor_agreement(clusters, neighbors), feature_lift(clusters, neighbors),
                                     silhouette,
                                     float(np.delete(ari[i], i).mean()), used,
                                     None if labels is None else hungarian_accuracy(clusters, labels)))
    return scores


def choose_candidate(scores: list[CandidateScore]) -> str:
    """The name of the candidate to keep; ``scores[0]`` is the heads'. Among the candidates that use
    the most clusters (fewer clusters keep more pairs together: one cluster keeps them all), the one
    that keeps the most mined neighbour pairs together, when it keeps at least :data:`MARGIN` more
    of them than the heads; else the heads (which classify new images as they are)."""
    if not scores:
        raise ValueError("no candidates to choose from")
    most = max(score.clusters_used for score in scores)
    agreement = [score.neighbor_agreement if score.clusters_used == most else -1.0 for score in scores]
    best = int(np.argmax(agreement))
    return scores[best].name if agreement[best] >= agreement[0] + MARGIN else scores[0].name
