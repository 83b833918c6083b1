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
merges and splits still apply. Clusters the model has no column for (a split, a cluster the user
made from a selection) get one (:func:`grow_heads`: each new column starts from the mean of its
labelled images, as weight imprinting does, Qi et al., CVPR 2018), with no prior (:func:`curated_prior`),
so that the labels alone define them; a column the curation emptied (a merge) passes its prior on.

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
from typing import cast

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy import sparse

from ..config import RefineConfig
from ..data.artifacts import Checkpoint
from .batches import Batches
from .clustering import ClusterHeads, ConsensusHeads
from .distributed import data_parallel, gather, is_main, local_rows, per_rank, seeded
from .neighbors import neighbor_agreement
from .precision import Amp

SPREAD_STEPS = 30          # iterations of the spreading (alpha^30 < 0.05 for alpha 0.9)
ALPHAS = (0.8, 0.9)
PRIOR_WEIGHTS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3)
FOLDS = 3
MIN_LABELS_TO_CHOOSE = 30  # fewer: the config's alpha and prior_weight
CENTRE_SAMPLE = 10_000     # images whose mean input a grown column is centred on
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
                     targets: np.ndarray, default: Spreading, seed: int = 0, grown: bool = False) -> Spreading:
    """The :class:`Spreading` that best predicts held-out labels (``default`` with fewer than
    :data:`MIN_LABELS_TO_CHOOSE`), among those whose clusters keep the mined ``neighbors`` ``(N, k)``
    together within :data:`AGREEMENT_DROP` of the model's own (``prior`` ``(N, K)``); ties go to the
    earlier of :data:`ALPHAS` x :data:`PRIOR_WEIGHTS`. When none does, the one that keeps them together best.

    ``grown``: the prior has columns no model made (:func:`curated_prior`: 0 everywhere), so with few
    labels the default would let a model that knows nothing of a new cluster outvote the labels that
    define it (measured on digits, a new cluster made from 15 images of a digit whose cluster was
    merged into another: the spread targets put 21% of the digit there at prior 0.1, 95-98% at 0.03 or
    less; the refine 8% and 98%). Then, with fewer labels than the cross-validation needs (which a new
    cluster's labels, all alike, cannot inform), the weakest prior among those that keep the
    neighbours together is used."""
    labelled, targets = np.asarray(labelled), np.asarray(targets)
    if len(labelled) < MIN_LABELS_TO_CHOOSE and not grown:
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
    if len(labelled) < MIN_LABELS_TO_CHOOSE:  # grown, with few labels
        weakest = min(kept, key=lambda pair: pair[0].prior_weight)  # the first of equals
        return Spreading(weakest[0].alpha, weakest[0].prior_weight, None, weakest[1])
    scored = [Spreading(c.alpha, c.prior_weight, held_out(c), a) for c, a in kept]
    return max(scored, key=lambda c: c.held_out_accuracy)  # the first of equals


def curated_prior(prior: np.ndarray, num_clusters: int, fold: dict[int, int]) -> np.ndarray:
    """The model's probabilities ``(N, K)`` as a prior over the curation's ``num_clusters`` (K' >= K)
    clusters ``(N, K')``: the new columns 0 (only labels put images there), and each column ``j`` of
    ``fold`` (``{j: t}``, clusters the curation emptied) added to column ``t`` and then 0."""
    prior = np.asarray(prior, dtype=np.float32)
    n, k = prior.shape
    if num_clusters < k:
        raise ValueError(f"the curation's {num_clusters} clusters are fewer than the model's {k}")
    bad = {j: t for j, t in fold.items() if not (0 <= j < k and 0 <= t < num_clusters and j != t)}
    if bad:
        raise ValueError(f"fold must map model clusters in [0, {k}) to other clusters in [0, {num_clusters}), got {bad}")
    grown = np.zeros((n, num_clusters), np.float32)
    grown[:, :k] = prior
    for j, t in fold.items():
        grown[:, t] += grown[:, j]
        grown[:, j] = 0.0
    return grown


def grow_heads(heads: ClusterHeads | ConsensusHeads, num_clusters: int, inputs: Callable[[np.ndarray], torch.Tensor],
               num_images: int, labelled: np.ndarray, targets: np.ndarray, seed: int = 0) -> ClusterHeads | ConsensusHeads:
    """``heads`` (in place, returned) with ``num_clusters`` outputs instead of their ``K``: the old
    columns unchanged; new column ``c`` points from the mean input of the last layer over (up to
    :data:`CENTRE_SAMPLE` of) the ``num_images`` images to the mean over the ``labelled`` images
    ``(L,)`` whose ``targets`` ``(L,)`` are ``c``, as long as the old columns' weights are on
    average, and gives the centre the old columns' mean logit; a new column no label names starts
    with no weight and the lowest old bias. A consensus keeps the new columns' numbers for every
    head. ``inputs(index)``: the heads' inputs ``(B, D)`` of images ``index`` ``(B,)``."""
    members = heads.members if isinstance(heads, ConsensusHeads) else heads
    k = members.num_clusters
    labelled, targets = np.asarray(labelled, dtype=np.int64), np.asarray(targets, dtype=np.int64)
    if num_clusters < k:
        raise ValueError(f"heads with {k} clusters cannot shrink to {num_clusters}")
    if labelled.shape != targets.shape or (len(targets) and (targets.min() < 0 or targets.max() >= num_clusters)):
        raise ValueError(f"need one target in [0, {num_clusters}) per labelled image, "
                         f"got {labelled.shape} images and {targets.shape} targets")
    if num_clusters == k:
        return heads
    sample = np.sort(np.random.default_rng(seed).permutation(num_images)[:CENTRE_SAMPLE])
    with torch.no_grad():
        everyone, chosen = inputs(sample), inputs(labelled)
        for h, head in enumerate(members.heads):
            layers = cast(nn.Sequential, head)  # a Linear, or a Sequential ending in one
            last = head if isinstance(head, nn.Linear) else cast(nn.Linear, layers[-1])
            body = nn.Identity() if isinstance(head, nn.Linear) else layers[:-1].eval()
            centre, picked = body(everyone).mean(0), body(chosen)
            grown = nn.Linear(last.in_features, num_clusters).to(last.weight.device)
            grown.weight[:k], grown.bias[:k] = last.weight, last.bias
            length = last.weight.norm(dim=1).mean()
            for c in range(k, num_clusters):
                rows = picked[torch.as_tensor(targets == c, device=picked.device)]
                if len(rows):
                    direction = rows.mean(0) - centre
                    grown.weight[c] = length * direction / direction.norm().clamp_min(1e-12)
                    grown.bias[c] = last.bias.mean() - grown.weight[c] @ centre
                else:
                    grown.weight[c], grown.bias[c] = 0.0, last.bias.min()
            if isinstance(head, nn.Linear):
                members.heads[h] = grown
            else:
                layers[-1] = grown
    members.num_clusters = num_clusters
    if isinstance(heads, ConsensusHeads):
        new = torch.arange(k, num_clusters, device=heads.order.device).expand(len(heads.order), -1)
        heads.order = torch.cat([heads.order, new], 1)
        heads.num_clusters = num_clusters
    return heads


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
