"""A run's suggestion for the number of clusters, with its evidence (:mod:`scan_core.method.num_clusters`):
the one its suggest stage made (``--clusters auto``), else one computed now from what any run keeps —
its mined neighbours and the points its heads learn on (``manifold.npy``, else ``features.npy``)."""
from __future__ import annotations

from pathlib import Path

from ..data.artifacts import CorruptArtifact, load_json
from ..data.rundir import SUGGESTION
from ..method.num_clusters import KSuggestion, suggest_num_clusters
from .results import RunResults


def run_suggestion(run_dir: Path) -> KSuggestion:
    """The suggestion of the run in ``run_dir``; FileNotFoundError before its neighbours are mined."""
    run_dir = Path(run_dir)
    if (run_dir / SUGGESTION).exists():
        try:
            return KSuggestion.from_dict(load_json(run_dir / SUGGESTION))
        except (KeyError, TypeError, ValueError) as error:
            raise CorruptArtifact(f"{run_dir / SUGGESTION}: {error}") from error
    results = RunResults.load(run_dir)
    points = results.head_points()
    if results.neighbors is None or points is None:
        raise FileNotFoundError(f"{run_dir.name} has no mined neighbours yet")
    return suggest_num_clusters(points, results.neighbors, seed=results.config.get("seed", 0))
