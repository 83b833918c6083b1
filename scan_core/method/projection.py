"""Projection stage: a 2-D UMAP (McInnes et al., 2018) of the features for the app's scatter plot,
fitted on a sample of at most ``map_sample`` images past which the rest are placed."""
from __future__ import annotations

import numpy as np

from ..config import MAP_SAMPLE
from ..costs import stage_cost
from .manifold import umap_embedding


def umap_seconds(num_images: int) -> float:
    """Rough seconds :func:`umap_2d` takes on ``num_images`` points in a fresh process (an
    estimate for progress reports: the projection's :data:`scan_core.costs.STAGE_COSTS`)."""
    return stage_cost("projection", num_images)


def umap_2d(features: np.ndarray, seed: int = 0, n_neighbors: int = 15, sample: int = MAP_SAMPLE,
            out: np.ndarray | None = None) -> np.ndarray:
    """UMAP of ``features`` ``(N, D)`` -> float32 ``(N, 2)`` (cosine metric), fitted on ``sample``
    of them at most, the rest placed by UMAP's ``transform`` (:func:`~scan_core.method.manifold.umap_embedding`),
    written into ``out`` when given."""
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2 or len(features) < 3:
        raise ValueError(f"UMAP needs features (N, D) with N >= 3, got shape {features.shape}")
    return umap_embedding(features, sample, seed, out, n_components=2, n_neighbors=n_neighbors, metric="cosine",
                          low_memory=True)
