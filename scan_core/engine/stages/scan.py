"""The scan stage: several SCAN heads trained on the mined neighbours
(:mod:`scan_core.method.clustering`), the head with the lowest held-out loss kept; its
probabilities ``(N, K)`` on the clean images are the run's first cluster assignment."""
from __future__ import annotations

from ...method.clustering import ClusterHeads, predict, train_scan
from ..context import RunContext
from ..models import cluster_model, load_cluster_stage, save_cluster_stage


def run(ctx: RunContext) -> None:
    c = ctx.config
    heads = ClusterHeads(ctx.encoder.feature_dim, c.num_clusters, c.scan.num_heads, c.scan.hidden)
    model, augmented, clean = cluster_model(ctx, heads)
    best, losses = train_scan(model, augmented, clean, ctx.neighbors, c.scan, c.seed, ctx.progress.step,
                              checkpoint=ctx.checkpoint("scan"))
    ctx.probs = predict(model, clean, len(ctx.images), best)
    save_cluster_stage(ctx.dir, "scan", model, ctx.probs, best)
    ctx.record("scan", {**ctx.scores(ctx.probs.argmax(1)), "head": best,
                        "head_losses": [round(x, 4) for x in losses]})


def load(ctx: RunContext) -> None:
    load_cluster_stage(ctx, "scan")
