"""The manifold stage (optional, with ``manifold_dims``): a UMAP embedding ``(N, manifold_dims)`` of
the pretext features (:mod:`scan_core.method.manifold`) that the heads learn on and that the
``manifold`` neighbour space mines; k-means on it is recorded as the stage's score once K is known (UMAP + k-means,
the strongest simple peer). UMAP reports no progress: the stage counts seconds against an estimate."""
from __future__ import annotations

import numpy as np

from ...data.artifacts import CorruptArtifact, load_array, write_array
from ...method.manifold import fit_manifold, manifold_seconds
from ..context import RunContext


def run(ctx: RunContext) -> None:
    c = ctx.config
    with ctx.progress.timed(manifold_seconds(len(ctx.features))):
        ctx.manifold = write_array(ctx.dir / "manifold.npy", (len(ctx.features), c.manifold_dims), np.float32,
                                   lambda out: fit_manifold(ctx.features, c.manifold_dims, c.seed, c.map_sample, out))
    ctx.record("manifold", {**(score(ctx) if c.num_clusters else {}), "method": "k-means on the UMAP manifold",
                            "dims": c.manifold_dims,
                            "fitted_on": min(len(ctx.features), c.map_sample)})


def score(ctx: RunContext) -> dict:
    """The scores of K-means on the manifold (the suggest stage asks when K was not known yet)."""
    from sklearn.cluster import KMeans
    c = ctx.config
    return ctx.scores(KMeans(c.num_clusters, n_init=10, random_state=c.seed).fit_predict(ctx.manifold))


def load(ctx: RunContext) -> None:
    ctx.manifold = load_array(ctx.dir / "manifold.npy", mmap=True)
    if ctx.manifold.shape != (len(ctx.images), ctx.config.manifold_dims):
        raise CorruptArtifact("manifold.npy has the wrong shape")
