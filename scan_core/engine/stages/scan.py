"""The scan stage: several heads trained on the mined neighbours with SCAN's loss or TEMI's
(:mod:`scan_core.method.clustering`, ``scan.loss``); of every head at a few epochs, the one kept by held-out loss
among those that agree with the others; all heads of that epoch matched to it and averaged
(:class:`~scan_core.method.clustering.ConsensusHeads`): their probabilities ``(N, K)`` on the clean
images are the run's first cluster assignment, unless that vote merged clusters away
(:func:`~scan_core.method.clustering.merged_away`; measured when over-clustering: heads split a
class differently), when the kept head's own are (``metrics.json`` ``scan.consensus``). With labels,
``metrics.json`` also reports every candidate's ACC and the kept head's alone (never used to
choose)."""
from __future__ import annotations

import numpy as np

from ...data.artifacts import scratch_array
from ...method.clustering import (
    ClusterHeads,
    ConsensusHeads,
    choose_head,
    consensus_order,
    kmeans_prior,
    merged_away,
    predict,
    train_scan,
)
from ...method.metrics import hungarian_accuracy
from ..context import RunContext
from ..models import cluster_model, load_cluster_stage, on_inputs, save_cluster_stage


def run(ctx: RunContext) -> None:
    c = ctx.config
    heads = ClusterHeads(ctx.head_features.shape[1], c.num_clusters, c.scan.num_heads, c.scan.hidden)
    model, augmented, clean = cluster_model(ctx, heads)
    prior = kmeans_prior(ctx.head_features, c.num_clusters, c.seed) if c.scan.size_prior == "kmeans" else None
    snapshots = train_scan(model, augmented, clean, ctx.neighbors, c.scan, c.seed, ctx.progress.step,
                           checkpoint=ctx.checkpoint("scan"), precision=ctx.precision, prior=prior)
    clusters = np.concatenate([s.clusters.numpy() for s in snapshots])   # (epochs x heads, N)
    losses = np.concatenate([s.losses.numpy() for s in snapshots])
    best, agreement = choose_head(clusters, losses)
    kept, head = snapshots[best // c.scan.num_heads], best % c.scan.num_heads
    model.load_state_dict(kept.state)
    n = len(ctx.images)
    every_head = predict(model, clean, n, out=scratch_array(ctx.dir, (c.scan.num_heads, n, c.num_clusters), np.float32))
    consensus = ConsensusHeads(heads, consensus_order(every_head, clusters[best]))
    ctx.probs = predict(on_inputs(ctx, consensus), clean, n, 0)
    voted = not merged_away(clusters[best], ctx.probs.argmax(1), c.num_clusters)
    if not voted:
        ctx.probs = np.array(every_head[head])
    save_cluster_stage(ctx, "scan", consensus if voted else heads, ctx.probs, head)
    per_epoch = lambda values: [[round(float(x), 4) for x in row] for row in np.reshape(values, (len(snapshots), -1))]
    values = {**ctx.scores(ctx.probs.argmax(1)), "head": head, "head_epoch": kept.epoch, "consensus": voted,
              "snapshot_epochs": [s.epoch for s in snapshots],
              "head_losses": per_epoch(losses), "head_agreement": per_epoch(agreement), "loss": c.scan.loss}
    if prior is not None:
        values["size_prior"] = [round(float(share), 4) for share in prior]
    if ctx.images.has_labels:
        values["head_acc"] = per_epoch([hungarian_accuracy(found, ctx.images.labels) for found in clusters])
        values["kept_head_acc"] = round(hungarian_accuracy(clusters[best], ctx.images.labels), 4)
    ctx.record("scan", values)


def load(ctx: RunContext) -> None:
    load_cluster_stage(ctx, "scan")
