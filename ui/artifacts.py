"""What a page reads of a run, and the cache key made of it: the run and its artifacts' mtimes, so
that what a page derives is computed again when a stage is redone or an artifact appears."""
from __future__ import annotations

from pathlib import Path

from scan_core.data.rundir import STAGES
from scan_core.explore.results import RunResults

#: What a page reads of a run: a new or redone file changes the cache key of what it derives (the
#: stages' arrays and records, and the features' own neighbours the neighbors stage may add).
ARTIFACTS = ("config.json", "metrics.json", *(name for stage in STAGES for name in stage.artifacts
                                             if not name.endswith(".pt")), "feature_neighbors.npy")


def signature(run_dir: Path) -> tuple:
    """mtimes of the artifacts a page reads (0 for one missing): a new artifact or a redone stage changes it."""
    return tuple((run_dir / name).stat().st_mtime_ns if (run_dir / name).exists() else 0 for name in ARTIFACTS)


def results_key(loaded: RunResults) -> tuple:
    """The run and the mtimes of its artifacts: a cache key for what a page derives from them."""
    return str(loaded.dir), signature(loaded.dir)
