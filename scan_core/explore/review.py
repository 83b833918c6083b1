"""The review queue: the images most likely to sit in the wrong cluster, across all clusters, most
doubtful first, from what a run knows without labels.

SCAN's premise — an image and its nearest neighbours share a class — read backwards: an image whose
neighbours belong elsewhere probably does too. Each neighbour ``j`` of image ``i`` (in curated
cluster ``c``) votes for ``c`` with its probability of ``c``: the model's ``p_j[c]``, or 1 / 0 when
the user's curation moved ``j`` away from the model's cluster (so the queue follows the edits).
Two neighbourhoods vote, and the doubt is the sum of their votes *against* ``c``, each in [0, 1]:

- **mined**: the neighbours the run mined (its ``neighbor_space``: HOG, fused, the manifold...);
- **features**: the nearest images in the pretext features the heads read, when the run mined
  elsewhere (``feature_neighbors.npy``; else the mined vote alone).

Measured (``bench/bench_review.py``): on a Fashion-MNIST run where 27% of the images are
misclustered, 92% of the first 500 are (3.4x a random pick); the top-two margin of the model's
probabilities alone, 62%. Images the user reviewed (accepted or moved one by one) or flagged as
outliers leave the queue. Labels are never used.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .curation import Marks


@dataclass(frozen=True)
class ReviewQueue:
    """``order`` ``(M,)``: image indices still to review, most doubtful first; ``doubt`` ``(N,)``
    their sum; ``against`` ``(V, N)``: each neighbourhood's vote against the image's cluster."""

    order: np.ndarray
    doubt: np.ndarray
    against: np.ndarray

    @property
    def likely_wrong(self) -> np.ndarray:
        """``(N,)`` in [0, 1]: the neighbourhoods' mean vote against each image's cluster (for every
        image, also those left out of the queue)."""
        return self.against.mean(0)

    def agreement(self, index: int) -> float:
        """The share of image ``index``'s neighbours' votes for its cluster, over the neighbourhoods."""
        return float(1 - self.against[:, index].mean())

    def reason(self, index: int) -> str:
        """Why image ``index`` is in the queue, in words."""
        spaces = ("its mined neighbours", "its nearest in the features")[:len(self.against)]
        return " · ".join(f"{name} {1 - vote[index]:.0%} for its cluster" for name, vote in zip(spaces, self.against))


def review_queue(probs: np.ndarray, neighbor_lists: list[np.ndarray], clusters: np.ndarray,
                 skip: Iterable[int] = ()) -> ReviewQueue:
    """The queue of a run: ``probs`` ``(N, K)`` its result's probabilities, ``neighbor_lists`` one or
    more ``(N, k)`` neighbour index arrays (mined, then feature space), ``clusters`` ``(N,)`` the
    curated clusters; ``skip``: images left out (reviewed, outliers)."""
    probs, clusters = np.asarray(probs), np.asarray(clusters)
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise ValueError(f"probs must be (N, K) with K >= 2, got shape {probs.shape}")
    n, k = probs.shape
    if not neighbor_lists or clusters.shape != (n,):
        raise ValueError(f"need at least one neighbour list and clusters (N,) with N={n}, got "
                         f"{len(neighbor_lists)} lists and clusters of shape {clusters.shape}")
    moved = clusters != probs.argmax(1)  # the user's word replaces the model's for these
    per_list = []
    for neighbors in neighbor_lists:
        neighbors = np.asarray(neighbors)
        if neighbors.ndim != 2 or len(neighbors) != n:
            raise ValueError(f"neighbour lists must be (N, k) with N={n}, got shape {neighbors.shape}")
        own = clusters[:, None]
        model_vote = np.where(own < k, probs[neighbors, np.minimum(own, k - 1)], 0.0)
        votes = np.where(moved[neighbors], clusters[neighbors] == own, model_vote)
        per_list.append(1.0 - votes.mean(1))
    against = np.stack(per_list)
    doubt = against.sum(0)
    keep = np.ones(n, dtype=bool)
    keep[skip.indices if isinstance(skip, Marks) else np.fromiter(skip, dtype=np.int64)] = False
    candidates = np.flatnonzero(keep)
    order = candidates[np.argsort(-doubt[candidates], kind="stable")]
    return ReviewQueue(order=order, doubt=doubt, against=against)


def teaching_picks(points: np.ndarray, count: int, skip: Iterable[int] = (), seed: int = 0) -> np.ndarray:
    """``count`` images ``(count,)`` that together stand for all the others, to label before a
    refine (:mod:`scan_core.explore.refine`): the one nearest each centre of ``count``-means on the
    L2-normalised ``points`` ``(N, D)`` (the space the heads learn on), images in ``skip`` left out,
    in the order of their groups' sizes, biggest first. Labels spread from representatives better
    than from the review queue's doubtful images, which teach the model one hard case each
    (measured on Fashion-MNIST, 700 labels: representatives 0.85, random 0.84, the queue 0.78)."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    from ..method.cosine import l2_normalize
    candidates = np.setdiff1d(np.arange(len(points)), np.fromiter(skip, dtype=np.int64))
    count = min(int(count), len(candidates))
    if count < 1:
        return np.empty(0, dtype=np.int64)
    x = l2_normalize(np.asarray(points, dtype=np.float32)[candidates])
    kind = MiniBatchKMeans(count, random_state=seed, n_init=1, batch_size=4096) if len(x) > 20_000 else \
        KMeans(count, random_state=seed, n_init=1)
    groups = kind.fit_predict(x)
    distance = ((x - kind.cluster_centers_[groups]) ** 2).sum(1)
    order = np.lexsort((distance, groups))  # by group, nearest its centre first
    first = order[np.r_[True, groups[order][1:] != groups[order][:-1]]]
    sizes = np.bincount(groups)[groups[first]]
    return candidates[first[np.argsort(-sizes, kind="stable")]]


def neighbour_similarity(features: np.ndarray, neighbors: np.ndarray, batch: int = 65_536) -> np.ndarray:
    """Cosine similarity ``(N, k)`` of each image's features ``(N, D)`` to those of its mined
    ``neighbors`` ``(N, k)``, computed in batches (features may be memory-mapped)."""
    from ..method.cosine import l2_normalize
    features, neighbors = np.asarray(features), np.asarray(neighbors)
    if features.ndim != 2 or neighbors.ndim != 2 or len(features) != len(neighbors):
        raise ValueError(f"features (N, D) and neighbors (N, k) must have as many rows, got {features.shape} "
                         f"and {neighbors.shape}")
    unit = l2_normalize(np.asarray(features, dtype=np.float32))
    out = np.empty(neighbors.shape, dtype=np.float32)
    for start in range(0, len(unit), batch):
        rows = slice(start, start + batch)
        out[rows] = np.einsum("nd,nkd->nk", unit[rows], unit[neighbors[rows]])
    return out


def near_duplicates(similarity: np.ndarray, neighbors: np.ndarray, threshold: float = 0.98) -> np.ndarray:
    """Pairs ``(P, 2)`` of images at least ``threshold`` alike (``similarity`` from
    :func:`neighbour_similarity`), each pair once (smaller index first), most alike first."""
    similarity, neighbors = np.asarray(similarity), np.asarray(neighbors)
    rows, cols = np.nonzero(similarity >= threshold)
    other = neighbors[rows, cols]
    keep = rows != other
    rows, other, alike = rows[keep], other[keep], similarity[rows, cols][keep]
    pairs = np.stack([np.minimum(rows, other), np.maximum(rows, other)], axis=1)[np.argsort(-alike, kind="stable")]
    _, first = np.unique(pairs, axis=0, return_index=True)  # a pair found from both of its images: once
    return pairs[np.sort(first)]


def outliers(similarity: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` images ``(count,)`` least like even their nearest mined neighbours (the lowest
    mean similarity to them, from :func:`neighbour_similarity`), most isolated first."""
    isolation = np.asarray(similarity).mean(1)
    return np.argsort(isolation, kind="stable")[: int(count)]
