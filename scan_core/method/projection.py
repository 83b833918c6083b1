"""Projection stage: a 2-D UMAP (McInnes et al., 2018) of the features for the app's scatter plot."""
from __future__ import annotations

import numpy as np

#: Seconds UMAP takes on a 2-core CPU: a fixed part (importing umap, numba compiling it in a fresh
#: process: most of the digits demo's 12 s) and a part per image (about 65 s for 70k images).
UMAP_FIXED_SECONDS = 12.0
UMAP_SECONDS_PER_IMAGE = 8e-4


def umap_seconds(num_images: int) -> float:
    """Rough seconds :func:`umap_2d` takes on ``num_images`` points in a fresh process (an
    estimate for progress reports, from :data:`UMAP_FIXED_SECONDS` and the per-image cost)."""
    return UMAP_FIXED_SECONDS + UMAP_SECONDS_PER_IMAGE * num_images


def umap_2d(features: np.ndarray, seed: int = 0, n_neighbors: int = 15) -> np.ndarray:
    """UMAP of ``features`` ``(N, D)`` -> float32 ``(N, 2)`` (cosine metric)."""
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2 or len(features) < 3:
        raise ValueError(f"UMAP needs features (N, D) with N >= 3, got shape {features.shape}")
    import umap
    reducer = umap.UMAP(n_components=2, n_neighbors=min(n_neighbors, len(features) - 1), metric="cosine",
                        random_state=seed, low_memory=True)
    return reducer.fit_transform(features).astype(np.float32)
