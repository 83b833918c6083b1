"""What a run's cluster probabilities are worth, without labels: a confidence that means the same on
every route, and a warning when the clusters look no better than chance.

**Calibrated confidence.** Heads trained on frozen features with augmented feature banks give soft
probabilities (top probability 0.3-0.5 on good colour runs), heads on a UMAP manifold hard ones
(0.99), so the raw top probability says different things on different routes. Temperature scaling
(Guo et al., "On calibration of modern neural networks", ICML 2017) rescales the log-probabilities
by one scalar ``T``; here ``T`` is fitted without labels, so that an image's probabilities best
predict the clusters of its mined neighbours (SCAN's own premise: an image and its neighbours share
a class). The calibrated top probability then reads as "how likely a near image shares this
cluster" on every route. ``T`` changes no cluster (the argmax stays).

**Chance warning.** Agreement with the mined neighbours alone cannot tell good clusters from bad
ones: SCAN trains the heads to agree with them, and a UMAP manifold of pure noise has clumps of its
own. Two things noise does not give:

- heads that agree: heads started from different weights cut structureless data in different
  places, and find the same groups when the groups are there (the kept head's mean adjusted Rand
  index with the other candidate heads, below :data:`LOW_HEAD_AGREEMENT`);
- clusters that follow the features' own nearest neighbours (not the manifold's), beyond what the
  cluster sizes give by chance: the share ``a`` of an image's 20 nearest in the features that share
  its cluster, against ``c = sum_k share_k^2`` for a random assignment of the same sizes, as the
  lift ``(a - c) / (1 - c)``, below :data:`LOW_FEATURE_LIFT`.

Either one warns. Both thresholds sit between the good and the structure-free runs of both routes
in ``bench/bench_trust.py`` (table in ``bench/RESULTS.md``).
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

TEMPERATURE_RANGE = (0.05, 20.0)
CALIBRATION_PAIRS = 200_000  # (image, neighbour) pairs the temperature is fitted on at most (a sample)
LOW_HEAD_AGREEMENT = 0.3     # below either: the clusters are said to be barely better than chance
LOW_FEATURE_LIFT = 0.5


def neighbour_temperature(probs: np.ndarray, neighbors: np.ndarray, seed: int = 0) -> float:
    """The temperature ``T`` that minimises the cross-entropy of ``softmax(log p_i / T)`` against the
    cluster (argmax) of each mined neighbour of image ``i``; ``probs`` ``(N, K)``, ``neighbors``
    ``(N, k)`` indices. 1 when the neighbours are all in one cluster with their image (nothing to fit)."""
    probs, neighbors = np.asarray(probs, dtype=np.float64), np.asarray(neighbors)
    if probs.ndim != 2 or neighbors.ndim != 2 or len(probs) != len(neighbors):
        raise ValueError(f"probs (N, K) and neighbors (N, k) must have as many rows, got {probs.shape} and "
                         f"{neighbors.shape}")
    clusters = probs.argmax(1)
    rows = np.repeat(np.arange(len(probs)), neighbors.shape[1])
    targets = clusters[neighbors.ravel()]
    if len(rows) > CALIBRATION_PAIRS:
        keep = np.random.default_rng(seed).choice(len(rows), CALIBRATION_PAIRS, replace=False)
        rows, targets = rows[keep], targets[keep]
    if (targets == clusters[rows]).all():
        return 1.0
    logits = np.log(np.clip(probs[rows], 1e-12, None))

    def loss(log_t: float) -> float:
        scaled = logits / np.exp(log_t)
        scaled -= scaled.max(1, keepdims=True)
        return float((np.log(np.exp(scaled).sum(1)) - scaled[np.arange(len(rows)), targets]).mean())

    low, high = np.log(TEMPERATURE_RANGE[0]), np.log(TEMPERATURE_RANGE[1])
    return float(np.exp(minimize_scalar(loss, bounds=(low, high), method="bounded", options={"xatol": 1e-3}).x))


def tempered(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log probs / temperature)`` ``(N, K)`` float32: the calibrated probabilities."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    logits = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, None)) / temperature
    logits -= logits.max(1, keepdims=True)
    out = np.exp(logits)
    return (out / out.sum(1, keepdims=True)).astype(np.float32)


def feature_lift(clusters: np.ndarray, neighbors: np.ndarray) -> float:
    """The chance-corrected share of ``neighbors`` ``(N, k)`` in each image's cluster (``clusters``
    ``(N,)``): ``(a - c) / (1 - c)``, ``a`` the share, ``c`` its value for a random assignment with the
    same cluster sizes; 1 when every neighbour shares its image's cluster, about 0 at chance."""
    clusters, neighbors = np.asarray(clusters), np.asarray(neighbors)
    shares = np.bincount(clusters) / len(clusters)
    chance = float((shares ** 2).sum())
    agreement = float((clusters[neighbors] == clusters[:, None]).mean())
    return 1.0 if chance >= 1 else (agreement - chance) / (1 - chance)


def chance_warning(head_agreement: float | None, lift: float, num_clusters: int) -> str | None:
    """A plain warning when the kept head agrees with the other candidate heads (``head_agreement``,
    mean ARI; None: not measured) less than :data:`LOW_HEAD_AGREEMENT`, or the clusters follow the
    features' own neighbours (:func:`feature_lift`) less than :data:`LOW_FEATURE_LIFT`; else None."""
    reasons = []
    if head_agreement is not None and head_agreement < LOW_HEAD_AGREEMENT:
        reasons.append(f"heads trained from different starts agree on them only at ARI {head_agreement:.2f} "
                       f"(1 = the same {num_clusters} groups every time, 0 = chance)")
    if lift < LOW_FEATURE_LIFT:
        reasons.append(f"the images' nearest neighbours in the features share their cluster only {lift:.0%} of "
                       "the way from chance to always")
    if not reasons:
        return None
    return (f"These clusters are barely better than chance: {'; '.join(reasons)}. Try another preset or backbone, "
            "more epochs, or another number of clusters.")
