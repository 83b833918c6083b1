"""Projection stage: a 2-D UMAP (McInnes et al., 2018) of the features for the app's scatter plot."""
from __future__ import annotations

import numpy as np

from ..costs import stage_cost


def umap_seconds(num_images: int) -> float:
    """Rough seconds :func:`umap_2d` takes on ``num_images`` points in a fresh process (an
    estimate for progress reports: the projection's :data:`scan_core.costs.STAGE_COSTS`)."""
    return stage_cost("projection", num_images)


def umap_2d(features: np.ndarray, seed: int = 0, n_neighbors: int = 15) -> np.ndarray:
    """UMAP of ``features`` ``(N, D)`` -> float32 ``(N, 2)`` (cosine metric)."""
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2 or len(features) < 3:
        raise ValueError(f"UMAP needs features (N, D) with N >= 3, got shape {features.shape}")
    import umap
    reducer = umap.UMAP(n_components=2, n_neighbors=min(n_neighbors, len(features) - 1), metric="cosine",
                        random_state=seed, low_memory=True)
    return reducer.fit_transform(features).astype(np.float32)
