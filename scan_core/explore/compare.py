"""Two runs side by side: their settings and scores, and, when they clustered the same images, how
far their clusters agree (the adjusted Rand index, and a cross-table of cluster against cluster)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import adjusted_rand_score

from ..method.metrics import contingency
from .results import RunResults


@dataclass(frozen=True)
class RunComparison:
    """``rows``: one dict per run (name, images, K, preset, backbone, the stage kept, its ACC / NMI /
    ARI when labelled, seconds); ``agreement``: the ARI between the two runs' clusters and
    ``crosstab`` ``(K_a, K_b)``: images per pair of clusters, both None when the runs clustered
    different images."""

    rows: list[dict]
    agreement: float | None
    crosstab: np.ndarray | None


def same_images(a: RunResults, b: RunResults) -> bool:
    """Whether ``a`` and ``b`` hold the same images in the same order (by their ids)."""
    return len(a.images) == len(b.images) and bool(np.array_equal(a.images.ids, b.images.ids))


def compare_runs(a: RunResults, b: RunResults, clusters_a: np.ndarray, clusters_b: np.ndarray) -> RunComparison:
    """``a`` beside ``b``; ``clusters_a`` ``(N_a,)`` and ``clusters_b`` ``(N_b,)``: their (curated) clusters."""
    clusters_a, clusters_b = np.asarray(clusters_a), np.asarray(clusters_b)
    if clusters_a.shape != (len(a.images),) or clusters_b.shape != (len(b.images),):
        raise ValueError(f"clusters must have one entry per image: got {clusters_a.shape} for {len(a.images)} "
                         f"and {clusters_b.shape} for {len(b.images)} images")
    rows = [_row(run) for run in (a, b)]
    if not same_images(a, b):
        return RunComparison(rows, None, None)
    table = contingency(clusters_a, clusters_b)
    return RunComparison(rows, float(adjusted_rand_score(clusters_a, clusters_b)), table)


def _row(run: RunResults) -> dict:
    stage = run.final_stage
    final = run.metrics.stage(stage) if stage else {}
    seconds = sum(m.get("seconds", 0) for m in run.metrics.values() if isinstance(m, dict))
    return {"run": run.dir.name, "images": len(run.images), "K": run.num_clusters,
            "preset": run.config.preset,
            "heads learn on": run.config.backbone if run.config.uses_backbone else run.config.head_input,
            "result": stage, "ACC": final.get("acc"), "NMI": final.get("nmi"), "ARI": final.get("ari"),
            "seconds": round(seconds)}
