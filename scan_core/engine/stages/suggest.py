"""The suggest stage (with ``suggest_clusters``, ``--clusters auto``): K chosen from the run's own
features on its UMAP manifold, when it has one (:mod:`scan_core.method.num_clusters`), before
any head is trained; its evidence goes to ``suggested_k.json`` and K into the run's config. The
k-means scores of the earlier stages, which waited for K, are recorded then."""
from __future__ import annotations

from dataclasses import replace

from ...data.artifacts import load_json, save_json
from ...data.rundir import SUGGESTION
from ...method.num_clusters import KSuggestion, suggest_num_clusters
from ..context import RunContext
from . import manifold, pretext


def run(ctx: RunContext) -> None:
    suggestion = suggest_num_clusters(ctx.features, ctx.cluster_embedding(), seed=ctx.config.seed)
    save_json(ctx.dir / SUGGESTION, suggestion.to_dict())
    use(ctx, suggestion.k)
    ctx.amend("pretext", pretext.score(ctx))
    if ctx.manifold is not None:
        ctx.amend("manifold", manifold.score(ctx))
    values = {"k": suggestion.k, "reason": suggestion.reason()}
    if ctx.images.has_labels:
        values["true_k"] = ctx.images.num_classes
    ctx.record("suggest", values)


def load(ctx: RunContext) -> None:
    use(ctx, KSuggestion.from_dict(load_json(ctx.dir / SUGGESTION)).k)


def use(ctx: RunContext, k: int) -> None:
    """Make ``k`` the run's K, in its context and in ``config.json``."""
    ctx.config = replace(ctx.config, num_clusters=k)
    save_json(ctx.dir / "config.json", {**load_json(ctx.dir / "config.json"), "num_clusters": k})
