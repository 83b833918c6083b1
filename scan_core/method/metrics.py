"""Evaluation of a clustering against known labels (SCAN, section 3.1).

Hungarian accuracy matches clusters to classes one-to-one (``scipy.optimize.linear_sum_assignment``
on the vote matrix); majority-vote accuracy maps every cluster to its most frequent class, which is
the fair score when ``K`` differs from the number of classes (overclustering). NMI and ARI come from
scikit-learn and use the raw cluster ids.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score


def _check(clusters: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    clusters, labels = np.asarray(clusters), np.asarray(labels)
    if clusters.shape != labels.shape or clusters.ndim != 1:
        raise ValueError(f"clusters and labels must be 1-D of equal length, got {clusters.shape} and {labels.shape}")
    if len(clusters) == 0:
        raise ValueError("cannot evaluate an empty clustering")
    if clusters.min() < 0 or labels.min() < 0:
        raise ValueError("cluster ids and labels must be non-negative integers")
    return clusters.astype(np.int64), labels.astype(np.int64)


def contingency(clusters: np.ndarray, labels: np.ndarray, num_clusters: int | None = None,
                num_classes: int | None = None) -> np.ndarray:
    """Counts ``(K, C)``: row = cluster id, column = true class."""
    clusters, labels = _check(clusters, labels)
    k = max(num_clusters or 0, clusters.max() + 1)
    c = max(num_classes or 0, labels.max() + 1)
    pairs = clusters.astype(np.int64) * c + labels
    return np.bincount(pairs, minlength=k * c).reshape(k, c).astype(np.int64)


def hungarian_mapping(clusters: np.ndarray, labels: np.ndarray) -> dict[int, int]:
    """One-to-one cluster -> class map maximising agreement (clusters left over map to nothing)."""
    table = contingency(clusters, labels)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return {int(r): int(c) for r, c in zip(rows, cols)}


def hungarian_accuracy(clusters: np.ndarray, labels: np.ndarray) -> float:
    """Share of images whose cluster is matched (one-to-one, Hungarian) to their class."""
    table = contingency(clusters, labels)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / table.sum())


def majority_mapping(clusters: np.ndarray, labels: np.ndarray) -> dict[int, int]:
    """Each non-empty cluster -> its most frequent class."""
    table = contingency(clusters, labels)
    return {int(k): int(table[k].argmax()) for k in np.flatnonzero(table.sum(1))}


def majority_accuracy(clusters: np.ndarray, labels: np.ndarray) -> float:
    """Share of images carrying their cluster's most frequent class."""
    table = contingency(clusters, labels)
    return float(table.max(1).sum() / table.sum())


def evaluate(clusters: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """``acc`` (Hungarian), ``majority_acc``, ``nmi``, ``ari`` of hard cluster ids vs labels."""
    clusters, labels = _check(clusters, labels)
    return {
        "acc": hungarian_accuracy(clusters, labels),
        "majority_acc": majority_accuracy(clusters, labels),
        "nmi": float(normalized_mutual_info_score(labels, clusters)),
        "ari": float(adjusted_rand_score(labels, clusters)),
    }
