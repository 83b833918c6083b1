"""Self-labeling stage (Van Gansbeke et al., ECCV 2020, section 2.3).

Confident predictions on the un-augmented image (``p_max > threshold``, 0.99) become pseudo-labels
for the strongly augmented view, trained with class-balanced cross-entropy; a batch without any
confident image contributes nothing (the reference code crashes there). Like the other training
loops it saves a checkpoint every epoch and continues from the last one when a run is resumed.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import SelfLabelConfig
from ..data.artifacts import Checkpoint
from .batches import Batches
from .distributed import data_parallel, gather, is_main, local_rows, per_rank, seeded
from .precision import Amp


def selflabel_loss(weak_logits: torch.Tensor, strong_logits: torch.Tensor, threshold: float = 0.99,
                   balance: bool = True) -> torch.Tensor | None:
    """Class-balanced cross-entropy of the strong view against confident weak-view predictions.

    Args:
        weak_logits: ``(B, K)`` logits of the un-augmented images (targets; no gradient flows).
        strong_logits: ``(B, K)`` logits of the strongly augmented images.
        threshold: a weak prediction is a pseudo-label when its max probability exceeds this.
        balance: weight class ``c`` by ``n_confident / count_c`` among the confident images.

    Returns:
        The scalar loss, or ``None`` when no image of the batch is confident.
    """
    if weak_logits.shape != strong_logits.shape or weak_logits.ndim != 2:
        raise ValueError(f"logits must both be (B, K), got {tuple(weak_logits.shape)} and {tuple(strong_logits.shape)}")
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
    confidence, target = F.softmax(weak_logits.detach(), dim=1).max(1)
    mask = confidence > threshold
    if not mask.any():
        return None
    target = target[mask]
    weight = None
    if balance:
        counts = torch.bincount(target, minlength=weak_logits.shape[1]).to(weak_logits.dtype)
        weight = torch.where(counts > 0, mask.sum() / counts.clamp(min=1), torch.zeros_like(counts))
    return F.cross_entropy(strong_logits[mask], target, weight=weight)


def train_selflabel(model: nn.Module, weak_inputs: Callable[[np.ndarray], torch.Tensor],
                    strong_inputs: Callable[[np.ndarray], torch.Tensor], n: int, config: SelfLabelConfig,
                    seed: int = 0, on_step: Callable[[int, int, float], None] | None = None,
                    checkpoint: Checkpoint | None = None, precision: str = "float32") -> int:
    """Fine-tune ``model`` (inputs -> logits ``(B, K)``) on its own confident predictions; with a
    ``checkpoint``, continue from its last finished epoch and save every epoch there; the forward
    passes of the strong views in ``precision`` (:mod:`.precision`), the targets in float32.

    Returns the number of batches skipped for having no confident image.
    """
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    batches = Batches(n, per_rank(min(config.batch_size, n)), config.epochs)
    first_epoch = checkpoint.resume(model, optimizer, rng) if checkpoint else 0
    skipped = int(checkpoint.extra or 0) if first_epoch else 0
    parallel, device = data_parallel(model), next(model.parameters()).device
    amp = Amp(precision, device)

    def end_of_epoch(epochs: int) -> None:
        if checkpoint and is_main():
            checkpoint.save(epochs, model, optimizer, rng, extra=skipped)

    for step, index in batches(np.arange(n), rng, first_epoch, end_of_epoch):
        mine = local_rows(len(index))  # this rank's rows of the global batch; the loss sees all of them
        model.eval()  # targets from the un-augmented view, batch-norm in inference mode
        with torch.no_grad():
            weak_logits = gather(model(weak_inputs(index[mine])))
        model.train()
        with seeded(seed, step, device):
            strong = strong_inputs(index)
        with amp.autocast():
            strong_logits = parallel(strong[mine])
        loss = selflabel_loss(weak_logits, gather(strong_logits.float()), config.threshold)
        if loss is None:
            skipped += 1
            continue
        amp.step(loss, optimizer)
        if on_step:
            on_step(step, batches.total_steps, loss.item())
    return skipped
