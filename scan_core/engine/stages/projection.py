"""The projection stage: a 2-D UMAP of the features ``(N, 2)`` for the app's map
(:mod:`scan_core.method.projection`); skipped when the config has ``umap=False``."""
from __future__ import annotations

from ...data.artifacts import load_array, save_array
from ..context import RunContext


def run(ctx: RunContext) -> None:
    from ...method.projection import umap_2d  # umap/numba import is slow: only when this stage runs
    save_array(ctx.dir / "projection.npy", umap_2d(ctx.features, seed=ctx.config.seed))
    ctx.record("projection", {})


def load(ctx: RunContext) -> None:
    load_array(ctx.dir / "projection.npy")
