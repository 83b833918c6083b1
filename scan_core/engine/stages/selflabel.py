"""The selflabel stage: the kept SCAN head (or the heads' consensus) fine-tuned on its own confident predictions
(:mod:`scan_core.method.selflabel`): pseudo-labels from the clean view, cross-entropy on the
strong one (a feature bank, or without banks the frozen feature with Gaussian noise,
``selflabel.feature_noise``); its probabilities ``(N, K)`` on the clean images.

Self-labeling can make things worse: on frozen features it merges clusters or costs a little (the
digits and Fashion-MNIST benches, bench/RESULTS.md). Without labels, the stage compares the two
assignments: the run's result (``metrics.json`` ``final``) is the self-labeled one only when the
share of mined neighbour pairs in one cluster did not fall and no clusters were merged away
(:func:`~scan_core.method.clustering.merged_away`); else SCAN's. Both assignments are kept for the
Evaluation page. The result's confidence calibration and its chance warning (``final.temperature``,
``final.warning``, which the CLI and the app show) come from :mod:`scan_core.method.confidence`."""
from __future__ import annotations

import numpy as np
import torch

from ...data.artifacts import load_torch
from ...method.clustering import merged_away, predict, size_entropy
from ...method.neighbors import neighbor_agreement
from ...method.selflabel import train_selflabel
from ..context import RunContext
from ..models import cluster_model, kept_head, load_cluster_stage, save_cluster_stage


def run(ctx: RunContext) -> None:
    c = ctx.config
    scan_probs = ctx.probs
    before = neighbor_agreement(scan_probs.argmax(1), ctx.neighbors)
    head = scan_head(ctx)
    model, augmented, clean = cluster_model(ctx, head, noise=c.selflabel.feature_noise)
    skipped = train_selflabel(_SingleHead(model), weak_inputs=clean, strong_inputs=augmented,
                              n=len(ctx.images), config=c.selflabel, seed=c.seed, on_step=ctx.progress.step,
                              checkpoint=ctx.checkpoint("selflabel"), precision=ctx.precision)
    ctx.probs = predict(model, clean, len(ctx.images), 0)
    save_cluster_stage(ctx, "selflabel", head, ctx.probs)
    confident = float((ctx.probs.max(1) > c.selflabel.threshold).mean())
    after = neighbor_agreement(ctx.probs.argmax(1), ctx.neighbors)
    ctx.record("selflabel", {**ctx.scores(ctx.probs.argmax(1)), "skipped_batches": skipped,
                             "confident_share": confident, "neighbor_agreement": round(after, 4)})
    kept, why = keep_selflabel(scan_probs.argmax(1), ctx.probs.argmax(1), before, after, c.num_clusters)
    ctx.record_result(kept, why, ctx.probs if kept == "selflabel" else scan_probs)


def keep_selflabel(scan: np.ndarray, selflabel: np.ndarray, scan_agreement: float, selflabel_agreement: float,
                   num_clusters: int) -> tuple[str, str]:
    """``(stage, why)``: the stage whose clusters ``(N,)`` are the run's result, by the module's rule."""
    why = (f"neighbour agreement {scan_agreement:.4f} after SCAN, {selflabel_agreement:.4f} after self-labeling; "
           f"cluster-size entropy {size_entropy(scan):.3f}, {size_entropy(selflabel):.3f}")
    if selflabel_agreement < scan_agreement:
        return "scan", why + ": agreement fell, SCAN's clusters kept"
    if merged_away(scan, selflabel, num_clusters):
        return "scan", why + ": clusters were merged away, SCAN's clusters kept"
    return "selflabel", why


def load(ctx: RunContext) -> None:
    load_cluster_stage(ctx, "selflabel")


def scan_head(ctx: RunContext) -> torch.nn.Module:
    """The kept SCAN head of ``scan.pt`` (its fine-tuned encoder loaded into ``ctx.encoder``)."""
    saved = load_torch(ctx.dir / "scan.pt", ctx.device)
    if "encoder" in saved:
        ctx.encoder.load_state_dict(saved["encoder"])
    return kept_head(saved, ctx.head_features.shape[1], ctx.config)


class _SingleHead(torch.nn.Module):
    """Adapts a one-head model's ``(1, B, K)`` output to ``(B, K)`` logits."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[0]
