"""Refine: a run's kept head trained again with the labels a user gave image by image.

Two steps. First the labels spread over the mined neighbour graph, on top of what the model already
thinks (label spreading, Zhou et al., "Learning with local and global consistency", NIPS 2003, with
the model's probabilities as a prior):

    F <- alpha * S F + (1 - alpha) * Y,   S = D^-1/2 A D^-1/2 (A: the symmetrised kNN graph)

where ``Y`` is ``prior_weight`` times the model's probabilities ``(N, K)``, and the one-hot of its
cluster for a labelled image. How far labels spread (``alpha``) and how much the model counts
(``prior_weight``) are chosen from the labels themselves when there are at least
:data:`MIN_LABELS_TO_CHOOSE`: each pair of :data:`ALPHAS` x :data:`PRIOR_WEIGHTS` predicts held-out
labels (:data:`FOLDS`-fold cross-validation) and the best is used; the prior is left out only when
that predicts clearly more (:data:`WITHOUT_PRIOR_MARGIN`). Measured on a Fashion-MNIST run (ACC 0.72,
README): with 700 representative labels, spreading without the prior reaches 0.85, with it 0.80;
with the 700 most doubtful images of the review queue, 0.67 without it and 0.78 with it. Then the
head learns the spread targets (soft cross-entropy on the augmented feature banks), so that the
refined model applies to new images too. Training starts from the kept head, so
each cluster id keeps its meaning: the curation's names, merges and splits still apply.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy import sparse

from ..config import RefineConfig
from ..data.artifacts import Checkpoint

SPREAD_STEPS = 30          # iterations of the spreading (alpha^30 < 0.05 for alpha 0.9)
ALPHAS = (0.8, 0.9)
PRIOR_WEIGHTS = (0.01, 0.03, 0.1, 0.3)
FOLDS = 3
MIN_LABELS_TO_CHOOSE = 30  # fewer: the config's alpha and prior_weight
WITHOUT_PRIOR_MARGIN = 0.05  # the model's prior is left out only when that predicts this much more of the
#                              held-out labels: labels picked where the model errs (the review queue) hold
#                              out badly and would otherwise drop a prior that the rest of the images need


@dataclass(frozen=True)
class Spreading:
    """How the labels spread: ``alpha``, ``prior_weight``, and the share of held-out labels that
    setting predicted (None when it was not chosen by cross-validation)."""

    alpha: float
    prior_weight: float
    held_out_accuracy: float | None = None


def spread_labels(prior: np.ndarray, graph: sparse.csr_matrix, labelled: np.ndarray, targets: np.ndarray,
                  spreading: Spreading) -> np.ndarray:
    """Targets ``(N, K)`` (rows sum to 1): the labels (``labelled`` ``(L,)`` images, ``targets``
    ``(L,)`` their clusters) spread over ``graph`` (:func:`~scan_core.method.graph.normalized_graph`)
    on top of ``prior`` ``(N, K)``."""
    prior = np.asarray(prior, dtype=np.float64)
    n, k = prior.shape
    labelled, targets = np.asarray(labelled, dtype=np.int64), np.asarray(targets, dtype=np.int64)
    if graph.shape != (n, n):
        raise ValueError(f"prior (N, K) and graph (N, N) must match, got {prior.shape} and {graph.shape}")
    if len(labelled) != len(targets) or not len(labelled):
        raise ValueError(f"need labelled images and one target each, got {len(labelled)} and {len(targets)}")
    if labelled.min() < 0 or labelled.max() >= n or targets.min() < 0 or targets.max() >= k:
        raise ValueError(f"labelled images must lie in [0, {n}) and targets in [0, {k})")
    y = spreading.prior_weight * prior
    y[labelled] = 0.0
    y[labelled, targets] = 1.0
    spread = y.copy()
    for _ in range(SPREAD_STEPS):
        spread = spreading.alpha * (graph @ spread) + (1 - spreading.alpha) * y
    spread += 1e-12  # an image no label or prior reaches: uniform
    return (spread / spread.sum(1, keepdims=True)).astype(np.float32)


def choose_spreading(prior: np.ndarray, graph: sparse.csr_matrix, labelled: np.ndarray, targets: np.ndarray,
                     default: Spreading, seed: int = 0) -> Spreading:
    """The :class:`Spreading` that best predicts held-out labels (``default`` with fewer than
    :data:`MIN_LABELS_TO_CHOOSE`); ties go to the earlier of :data:`ALPHAS` x :data:`PRIOR_WEIGHTS`."""
    labelled, targets = np.asarray(labelled), np.asarray(targets)
    if len(labelled) < MIN_LABELS_TO_CHOOSE:
        return default
    fold = np.random.default_rng(seed).permutation(len(labelled)) % FOLDS

    def held_out(candidate: Spreading) -> float:
        return sum(int((spread_labels(prior, graph, labelled[fold != f], targets[fold != f], candidate)
                        [labelled[fold == f]].argmax(1) == targets[fold == f]).sum()) for f in range(FOLDS)) / len(labelled)

    def best_of(weights: tuple[float, ...]) -> Spreading:
        scored = [Spreading(alpha, weight, round(held_out(Spreading(alpha, weight)), 4))
                  for alpha in ALPHAS for weight in weights]
        return max(scored, key=lambda s: s.held_out_accuracy)  # the first of equals

    with_prior, without = best_of(PRIOR_WEIGHTS), best_of((0.0,))
    return without if without.held_out_accuracy >= with_prior.held_out_accuracy + WITHOUT_PRIOR_MARGIN else with_prior


def train_refine(model: nn.Module, inputs: Callable[[np.ndarray], torch.Tensor], targets: np.ndarray,
                 config: RefineConfig, seed: int = 0, on_step: Callable[[int, int, float], None] | None = None,
                 checkpoint: Checkpoint | None = None) -> None:
    """Train ``model`` (``inputs(index)`` -> logits ``(1, B, K)``) on soft ``targets`` ``(N, K)`` for
    ``config.epochs`` epochs of soft cross-entropy; ``checkpoint``: where to continue from and to save
    every finished epoch to, if given."""
    if config.epochs < 1:
        raise ValueError(f"refine epochs must be at least 1, got {config.epochs}")
    n = len(targets)
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    batch = min(config.batch_size, n)
    steps_per_epoch = max(1, n // batch)
    targets = torch.as_tensor(targets)
    model.train()
    first_epoch = checkpoint.resume(model, optimizer, rng) if checkpoint else 0
    total, step = steps_per_epoch * config.epochs, first_epoch * steps_per_epoch
    for epoch in range(first_epoch, config.epochs):
        order = rng.permutation(n)
        for start in range(0, steps_per_epoch * batch, batch):
            index = order[start:start + batch]
            logits = model(inputs(index))[0]
            loss = -(targets[index].to(logits.device) * F.log_softmax(logits, 1)).sum(1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if on_step:
                on_step(step, total, loss.item())
        if checkpoint:
            checkpoint.save(epoch + 1, model, optimizer, rng)
