"""The scan stage: several SCAN heads trained on the mined neighbours
(:mod:`scan_core.method.clustering`), the head that agrees best with the others kept; its
probabilities ``(N, K)`` on the clean images are the run's first cluster assignment. With labels,
``metrics.json`` also reports every head's ACC (never used to choose)."""
from __future__ import annotations

from ...method.clustering import ClusterHeads, choose_head, predict, train_scan
from ...method.metrics import hungarian_accuracy
from ..context import RunContext
from ..models import cluster_model, load_cluster_stage, save_cluster_stage


def run(ctx: RunContext) -> None:
    c = ctx.config
    heads = ClusterHeads(ctx.head_features.shape[1], c.num_clusters, c.scan.num_heads, c.scan.hidden)
    model, augmented, clean = cluster_model(ctx, heads)
    losses = train_scan(model, augmented, clean, ctx.neighbors, c.scan, c.seed, ctx.progress.step,
                        checkpoint=ctx.checkpoint("scan"))
    every_head = predict(model, clean, len(ctx.images))
    clusters = every_head.argmax(2)
    best, agreement = choose_head(clusters, losses)
    ctx.probs = every_head[best]
    save_cluster_stage(ctx.dir, "scan", model, ctx.probs, best)
    values = {**ctx.scores(clusters[best]), "head": best, "head_losses": [round(x, 4) for x in losses],
              "head_agreement": [round(x, 4) for x in agreement]}
    if ctx.images.has_labels:
        values["head_acc"] = [round(hungarian_accuracy(c, ctx.images.labels), 4) for c in clusters]
    ctx.record("scan", values)


def load(ctx: RunContext) -> None:
    load_cluster_stage(ctx, "scan")
