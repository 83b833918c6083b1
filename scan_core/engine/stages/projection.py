"""The projection stage: a 2-D UMAP ``(N, 2)`` of what the heads learned on (features or manifold) for the app's map
(:mod:`scan_core.method.projection`); skipped when the config has ``umap=False``. UMAP reports no
progress, so the stage counts its seconds against an estimate from the number of images."""
from __future__ import annotations

import numpy as np

from ...data.artifacts import load_array, write_array
from ...method.projection import umap_seconds
from ..context import RunContext


def run(ctx: RunContext) -> None:
    with ctx.progress.timed(umap_seconds(len(ctx.features))):
        from ...method.projection import umap_2d  # umap/numba import is slow: only when this stage runs
        projection = write_array(ctx.dir / "projection.npy", (len(ctx.head_features), 2), np.float32,
                                 lambda out: umap_2d(ctx.head_features, seed=ctx.config.seed,
                                                     sample=ctx.config.map_sample, out=out))
    ctx.record("projection", {"fitted_on": min(len(projection), ctx.config.map_sample)})


def load(ctx: RunContext) -> None:
    load_array(ctx.dir / "projection.npy", mmap=True)
