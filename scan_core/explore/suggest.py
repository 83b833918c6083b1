"""A run's suggestion for the number of clusters, with its evidence (:mod:`scan_core.method.num_clusters`):
the one its suggest stage made (``--clusters auto``), else, or when asked ``again``, one computed now
from what any run keeps: its features and, when it has one, their UMAP manifold (``manifold.npy``)."""
from __future__ import annotations

from pathlib import Path

from ..data.artifacts import CorruptArtifact, load_array, load_json
from ..data.rundir import SUGGESTION
from ..method.num_clusters import KSuggestion, suggest_num_clusters
from .results import RunResults


def run_suggestion(run_dir: Path, again: bool = False) -> KSuggestion:
    """The suggestion of the run in ``run_dir`` (``again``: computed now even when the run stored
    one, as for one an earlier version wrote); FileNotFoundError before its features are made."""
    run_dir = Path(run_dir)
    if (run_dir / SUGGESTION).exists() and not again:
        try:
            return KSuggestion.from_dict(load_json(run_dir / SUGGESTION))
        except (KeyError, TypeError, ValueError) as error:
            raise CorruptArtifact(f"{run_dir / SUGGESTION}: {error}") from error
    results = RunResults.load(run_dir)
    if results.features is None:
        raise FileNotFoundError(f"{run_dir.name} has no features yet")
    manifold = load_array(run_dir / "manifold.npy", mmap=True) if (run_dir / "manifold.npy").exists() else None
    return suggest_num_clusters(results.features, manifold, seed=results.config.seed)
