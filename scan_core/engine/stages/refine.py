"""The refine stage (on request: ``python -m scan_core refine RUN`` or the app's "Refine with my
labels"): the head of the cluster stage the run's result came from, trained again on the image
labels in ``refine_labels.json`` (:mod:`scan_core.method.refine`; the curation's moves, accepted
images and per-image labels, gathered by :mod:`scan_core.explore.refine`). Its probabilities
``(N, K')`` (the mean of the trained head's and the spread targets; new images get the head's)
become the run's result, with a column for every cluster of the curation the labels name (``K'``
of the request, at least the model's ``K``: a split's, a new cluster made from a selection's; the
head grows to it, :func:`~scan_core.method.refine.grow_heads`); a labelled image keeps the cluster
the user gave it (its row is that cluster's one-hot), so the curation replays onto it unchanged.
Asked again with other labels, it runs again from the same starting head. It keeps the result it
replaced (``refine.before``), so that the refine can be undone (:func:`scan_core.explore.refine.undo_refine`)."""
from __future__ import annotations

import numpy as np

from ...data.artifacts import CorruptArtifact, load_array, load_json, load_torch
from ...data.rundir import REFINE_LABELS
from ...method.clustering import predict
from ...method.graph import normalized_graph
from ...method.neighbors import neighbor_agreement
from ...method.refine import Spreading, choose_spreading, curated_prior, grow_heads, refined_probs, spread_labels, train_refine
from ..context import RunContext
from ..models import cluster_model, kept_head, load_cluster_stage, rows_of, save_cluster_stage


def run(ctx: RunContext) -> None:
    c = ctx.config
    if c.scan_mode != "frozen":
        raise ValueError("refine needs a run whose heads learn on frozen features (scan_mode 'frozen')")
    request = load_json(ctx.dir / REFINE_LABELS)
    labelled, targets = np.asarray(request["images"], dtype=np.int64), np.asarray(request["clusters"], dtype=np.int64)
    start = request["from"]
    model_probs = load_array(ctx.dir / f"{start}_probs.npy")
    before = model_probs.argmax(1)
    columns = int(request.get("num_clusters", model_probs.shape[1]))
    prior = curated_prior(model_probs, columns, {int(j): int(t) for j, t in request.get("fold", [])})
    graph = normalized_graph(ctx.neighbors)
    default = Spreading(c.refine.alpha, c.refine.prior_weight)
    spreading = choose_spreading(prior, graph, ctx.neighbors, labelled, targets, default, c.seed,
                                 grown=columns > model_probs.shape[1])
    spread = spread_labels(prior, graph, labelled, targets, spreading)
    head = kept_head(load_torch(ctx.dir / f"{start}.pt", ctx.device), ctx.head_features.shape[1], c).to(ctx.device)
    head = grow_heads(head, columns, rows_of(ctx.head_features, ctx.device), len(ctx.images), labelled, targets, c.seed)
    model, augmented, clean = cluster_model(ctx, head)
    train_refine(model, augmented, spread, c.refine.asked_by(request), c.seed, ctx.progress.step,
                 checkpoint=ctx.checkpoint("refine"), precision=ctx.precision)
    head_probs = predict(model, clean, len(ctx.images), 0)
    learnt = float((head_probs[labelled].argmax(1) == targets).mean())
    probs = refined_probs(head_probs, spread, labelled, targets)
    ctx.probs = probs
    save_cluster_stage(ctx, "refine", head, probs)
    clusters = probs.argmax(1)
    changed = int((clusters != before).sum())
    metrics = ctx.metrics()
    replaced = metrics["final"] if metrics.final.stage != "refine" else metrics.stage("refine").get("before")
    ctx.record("refine", {**ctx.scores(clusters), "from": start, "before": replaced, "labels": len(labelled),
                          "num_clusters": columns,
                          "digest": request["digest"],
                          "spread_acc": ctx.scores(spread.argmax(1)).get("acc"),
                          "head_acc": ctx.scores(head_probs.argmax(1)).get("acc"), "alpha": spreading.alpha,
                          "prior_weight": spreading.prior_weight, "held_out_accuracy": spreading.held_out_accuracy,
                          "spread_neighbor_agreement": spreading.neighbor_agreement,
                          "labels_learnt": round(learnt, 4), "changed": changed,
                          "neighbor_agreement": round(neighbor_agreement(clusters, ctx.neighbors), 4)})
    ctx.record_result("refine", f"{start} refined with {len(labelled):,} image labels; "
                                f"{changed:,} images changed cluster", probs)


def load(ctx: RunContext) -> None:
    load_cluster_stage(ctx, "refine")
    if ctx.metrics().stage("refine").get("digest") != load_json(ctx.dir / REFINE_LABELS).get("digest"):
        raise CorruptArtifact("the image labels changed since the last refine")
