"""Refine: a run's kept head trained again with the labels a user gave image by image.

Two steps. First the labels spread over the mined neighbour graph, on top of what the model already
thinks (label spreading, Zhou et al., "Learning with local and global consistency", NIPS 2003, with
the model's probabilities as the prior of every unlabelled image):

    F <- alpha * S F + (1 - alpha) * Y,   S = D^-1/2 A D^-1/2 (A: the symmetrised kNN graph)

where ``Y`` holds each image's probabilities ``(N, K)``, and for a labelled image ``label_mass``
times the one-hot of its cluster instead, so that a label outweighs the model around it and fades
with the distance in the graph. Then the head learns the spread targets (soft cross-entropy on the
augmented feature banks), so that the refined model applies to new images too. Training starts from
the kept head, so each cluster id keeps its meaning: the curation's names, merges and splits still
apply. Measured (README): on digits, 23 labels on misclustered images 0.932 -> 0.95; spreading with a
uniform prior, or training on the labels alone, moves far fewer images.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy import sparse

from ..config import RefineConfig
from ..data.artifacts import Checkpoint

SPREAD_STEPS = 50  # iterations of the spreading: alpha^50 < 1e-4 for alpha 0.8


def spread_labels(prior: np.ndarray, neighbors: np.ndarray, labelled: np.ndarray, targets: np.ndarray,
                  alpha: float = 0.8, label_mass: float = 10.0) -> np.ndarray:
    """Targets ``(N, K)`` (rows sum to 1): the labels spread over the graph of ``neighbors`` ``(N, k)``
    on top of ``prior`` ``(N, K)``; ``labelled`` ``(L,)`` images, ``targets`` ``(L,)`` their clusters."""
    prior = np.asarray(prior, dtype=np.float64)
    n, k = neighbors.shape
    labelled, targets = np.asarray(labelled, dtype=np.int64), np.asarray(targets, dtype=np.int64)
    if prior.shape[0] != n:
        raise ValueError(f"prior (N, K) and neighbors (N, k) need as many rows, got {prior.shape} and {neighbors.shape}")
    if len(labelled) != len(targets) or not len(labelled):
        raise ValueError(f"need labelled images and one target each, got {len(labelled)} and {len(targets)}")
    if labelled.min() < 0 or labelled.max() >= n or targets.min() < 0 or targets.max() >= prior.shape[1]:
        raise ValueError(f"labelled images must lie in [0, {n}) and targets in [0, {prior.shape[1]})")
    if not 0 < alpha < 1 or label_mass <= 0:
        raise ValueError(f"need 0 < alpha < 1 and label_mass > 0, got {alpha} and {label_mass}")
    graph = sparse.csr_matrix((np.ones(n * k), (np.repeat(np.arange(n), k), neighbors.ravel())), shape=(n, n))
    graph = ((graph + graph.T) > 0).astype(np.float64)
    scale = sparse.diags(1.0 / np.sqrt(np.asarray(graph.sum(1)).ravel()))
    s = scale @ graph @ scale
    y = prior.copy()
    y[labelled] = 0.0
    y[labelled, targets] = label_mass
    spread = y.copy()
    for _ in range(SPREAD_STEPS):
        spread = alpha * (s @ spread) + (1 - alpha) * y
    return (spread / spread.sum(1, keepdims=True)).astype(np.float32)


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
