"""Refine: a run's kept head trained again with the labels a user gave image by image.

Two steps. First the labels spread over the mined neighbour graph, on top of what the model already
thinks (label spreading, Zhou et al., "Learning with local and global consistency", NIPS 2003, with
the model's probabilities as a prior):

    F <- alpha * S F + (1 - alpha) * Y,   S = D^-1/2 A D^-1/2 (A: the symmetrised kNN graph)

where ``Y`` is ``prior_weight`` times the model's probabilities ``(N, K)``, and the one-hot of its
cluster for a labelled image. How far labels spread (``alpha``) and how much the model counts
(``prior_weight``) are chosen from the labels themselves when there are at least
:data:`MIN_LABELS_TO_CHOOSE`: each pair of :data:`ALPHAS` x :data:`PRIOR_WEIGHTS` predicts held-out
labels (:data:`FOLDS`-fold cross-validation) and the best is used, unless its clusters part
clearly more mined neighbour pairs than the model's (:data:`AGREEMENT_DROP`). Then the head learns
the spread targets (soft cross-entropy on the augmented feature banks), so that the refined model
applies to new images too; the run's own images take the mean of the head's probabilities and the
spread targets (:func:`refined_probs`), an ensemble of what the graph and the features each say.
Training starts from the kept head, so each cluster id keeps its meaning: the curation's names,
merges and splits still apply.

Measured on a Fashion-MNIST run (ACC 0.72) with 700 representative labels (bench/RESULTS.md,
``bench/bench_refine.py``): spread targets 0.854, the head trained on them 0.831, their mean 0.863;
priors weaker than 0.01 win the cross-validation there (the labels reach most images; the model
decides only where none does).
On a digits run (ACC 0.93) with the 36 most doubtful images of the review queue, the same weak prior
wins the cross-validation and spreads the labels to 0.69; it parts 8% of the neighbour pairs the
model kept together, and the agreement rule keeps a prior (0.03) that gives 0.93.
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
from .batches import Batches
from .distributed import data_parallel, gather, is_main, local_rows, per_rank, seeded
from .neighbors import neighbor_agreement
from .precision import Amp

SPREAD_STEPS = 30          # iterations of the spreading (alpha^30 < 0.05 for alpha 0.9)
ALPHAS = (0.8, 0.9)
PRIOR_WEIGHTS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3)
FOLDS = 3
MIN_LABELS_TO_CHOOSE = 30  # fewer: the config's alpha and prior_weight
AGREEMENT_DROP = 0.03      # a spreading may part at most this much more of the mined neighbour pairs than the model
#                            does: labels picked where the model doubts (the review queue) predict each other well
#                            with almost no prior, yet carry their boundary's classes deep into clean clusters


@dataclass(frozen=True)
class Spreading:
    """How the labels spread: ``alpha``, ``prior_weight``, and, when chosen by cross-validation, the
    share of held-out labels that setting predicted and the share of mined neighbour pairs its
    clusters keep together."""

    alpha: float
    prior_weight: float
    held_out_accuracy: float | None = None
    neighbor_agreement: float | None = None


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


def choose_spreading(prior: np.ndarray, graph: sparse.csr_matrix, neighbors: np.ndarray, labelled: np.ndarray,
                     targets: np.ndarray, default: Spreading, seed: int = 0) -> Spreading:
    """The :class:`Spreading` that best predicts held-out labels (``default`` with fewer than
    :data:`MIN_LABELS_TO_CHOOSE`), among those whose clusters keep the mined ``neighbors`` ``(N, k)``
    together within :data:`AGREEMENT_DROP` of the model's own (``prior`` ``(N, K)``); ties go to the
    earlier of :data:`ALPHAS` x :data:`PRIOR_WEIGHTS`. When none does, the one that keeps them together best."""
    labelled, targets = np.asarray(labelled), np.asarray(targets)
    if len(labelled) < MIN_LABELS_TO_CHOOSE:
        return default
    fold = np.random.default_rng(seed).permutation(len(labelled)) % FOLDS
    floor = neighbor_agreement(np.asarray(prior).argmax(1), neighbors) - AGREEMENT_DROP

    def held_out(candidate: Spreading) -> float:
        predicted = sum(int((spread_labels(prior, graph, labelled[fold != f], targets[fold != f], candidate)
                             [labelled[fold == f]].argmax(1) == targets[fold == f]).sum()) for f in range(FOLDS))
        return round(predicted / len(labelled), 4)

    def agreement(candidate: Spreading) -> float:
        return round(neighbor_agreement(spread_labels(prior, graph, labelled, targets, candidate).argmax(1), neighbors), 4)

    candidates = [Spreading(alpha, weight) for alpha in ALPHAS for weight in PRIOR_WEIGHTS]
    agreements = [agreement(c) for c in candidates]
    kept = [(c, a) for c, a in zip(candidates, agreements) if a >= floor]  # only these are cross-validated
    if not kept:
        kept = [max(zip(candidates, agreements), key=lambda pair: pair[1])]
    scored = [Spreading(c.alpha, c.prior_weight, held_out(c), a) for c, a in kept]
    return max(scored, key=lambda c: c.held_out_accuracy)  # the first of equals


def refined_probs(head: np.ndarray, spread: np.ndarray, labelled: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """The refine's answer for the run's images ``(N, K)``: the mean of the trained ``head``'s
    probabilities and the ``spread`` targets, both ``(N, K)``; a ``labelled`` image ``(L,)`` is the
    one-hot of its target ``(L,)``, the user's word."""
    if head.shape != spread.shape:
        raise ValueError(f"head and spread probabilities must match, got {head.shape} and {spread.shape}")
    probs = ((np.asarray(head, dtype=np.float64) + spread) / 2).astype(np.float32)
    probs[labelled] = np.eye(head.shape[1], dtype=np.float32)[targets]
    return probs


def train_refine(model: nn.Module, inputs: Callable[[np.ndarray], torch.Tensor], targets: np.ndarray,
                 config: RefineConfig, seed: int = 0, on_step: Callable[[int, int, float], None] | None = None,
                 checkpoint: Checkpoint | None = None, precision: str = "float32") -> None:
    """Train ``model`` (``inputs(index)`` -> logits ``(1, B, K)``) on soft ``targets`` ``(N, K)`` for
    ``config.epochs`` epochs of soft cross-entropy; ``checkpoint``: where to continue from and to save
    every finished epoch to, if given; ``precision``: of the forward passes (:mod:`.precision`)."""
    if config.epochs < 1:
        raise ValueError(f"refine epochs must be at least 1, got {config.epochs}")
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    batches = Batches(len(targets), per_rank(min(config.batch_size, len(targets))), config.epochs)
    soft = torch.as_tensor(targets)
    model.train()
    first_epoch = checkpoint.resume(model, optimizer, rng) if checkpoint else 0
    save = (lambda epochs: checkpoint.save(epochs, model, optimizer, rng)) if checkpoint and is_main() else None
    parallel, device = data_parallel(model), next(model.parameters()).device
    amp = Amp(precision, device)
    for step, index in batches(np.arange(len(targets)), rng, first_epoch, save):
        with seeded(seed, step, device):
            batch = inputs(index)
        with amp.autocast():
            mine = parallel(batch[local_rows(len(batch))])
        logits = gather(mine.float(), dim=1)[0]  # every rank's rows
        loss = -(soft[index].to(logits.device) * F.log_softmax(logits, 1)).sum(1).mean()
        amp.step(loss, optimizer)
        if on_step:
            on_step(step, batches.total_steps, loss.item())
