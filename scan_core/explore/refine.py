"""What a refine learns from, gathered from the curation (:mod:`scan_core.explore.curation`), and
asking a run for one (the engine's refine stage, :mod:`scan_core.engine.stages.refine`, does it).

An image is a label when the user said where it belongs, image by image: moved to a cluster,
accepted where it is, or given a label that is some cluster's name. A cluster's name alone is not a
label for its members (that would teach the model its own mistakes). Outliers are left out, and so
are images labelled with a name no single cluster with images has: :class:`ImageLabels` counts
them, to say so. A label may name a cluster the model has no column for (a split, a new cluster
made from a selection): the refine grows the model to the curation's clusters
(:mod:`scan_core.engine.stages.refine`).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import REFINE_EPOCHS
from ..data.artifacts import load_json, save_json
from ..data.run_metrics import METRICS_FILE, RunMetrics
from ..data.rundir import CLUSTER_STAGES, REFINE_LABELS, RunState, final_stage, planned_stages, read_status
from .curation import CuratedState, Curation
from .results import RunResults


@dataclass(frozen=True)
class ImageLabels:
    """``images`` ``(L,)`` and their ``clusters`` ``(L,)``; ``left_out``: reason -> images not used."""

    images: np.ndarray
    clusters: np.ndarray
    left_out: dict[str, int]


def image_labels(state: CuratedState) -> ImageLabels:
    """The curation's image-by-image labels as curated cluster ids (any of ``state.num_cluster_ids``)."""
    by_name: dict[str, list[int]] = {}
    sizes = state.cluster_sizes()
    for cluster, name in state.names.items():
        if sizes[cluster]:  # an emptied cluster's name is no place to put images
            by_name.setdefault(name, []).append(cluster)
    targets = {int(i): int(state.clusters[i]) for i in state.reviewed}
    left_out = {"labelled with a name no single cluster has": 0, "outliers": 0}
    for index, label in state.overrides.items():
        clusters = by_name.get(label, [])
        if len(clusters) == 1:
            targets[int(index)] = clusters[0]
        else:
            targets.pop(int(index), None)
            left_out["labelled with a name no single cluster has"] += 1
    for index in list(targets):
        if index in state.outliers:
            del targets[index]
            left_out["outliers"] += 1
    images = np.array(sorted(targets), dtype=np.int64)
    return ImageLabels(images, np.array([targets[i] for i in images], dtype=np.int64),
                       {reason: count for reason, count in left_out.items() if count})


def emptied_columns(model: np.ndarray, state: CuratedState) -> dict[int, int]:
    """The model's clusters the curation emptied (merged away, or all their images moved or made a
    new cluster), each with the curated cluster most of its images ``model == column`` are in now:
    ``{column: cluster}``. A refine moves such a column's prior there, so that a merged cluster
    stays one and does not outvote a new cluster its images were taken into. ``model`` ``(N,)``."""
    sizes = state.cluster_sizes()
    fold = {}
    for column in np.unique(model).tolist():
        if column >= len(sizes) or not sizes[column]:
            went = np.bincount(state.clusters[model == column], minlength=state.num_cluster_ids)
            fold[int(column)] = int(went.argmax())
    return fold


def request_refine(run_dir: Path, epochs: int = REFINE_EPOCHS) -> ImageLabels:
    """Ask the trained run in ``run_dir`` to refine with its curation's image labels for ``epochs``:
    write the request, ``refine_labels.json`` (its presence plans the refine stage, which the engine
    runs when the run is resumed; a refine stopped half-way continues when the request is the same).
    ValueError when the run is still running or not trained, or has no image label."""
    run_dir = Path(run_dir)
    status = read_status(run_dir)
    if status.state in (RunState.RUNNING, RunState.NEW):
        raise ValueError(f"{run_dir.name} is {status.state}: wait for its training to finish before refining")
    untrained = [s.name for s in planned_stages(load_json(run_dir / "config.json"))
                 if not s.on_request and s.name not in status.completed]
    if untrained:
        raise ValueError(f"{run_dir.name} has not finished training ({', '.join(untrained)} to go): resume it first")
    if epochs < 1:
        raise ValueError(f"refine epochs must be at least 1, got {epochs}")
    results = RunResults.load(run_dir)
    state = Curation(run_dir, results.clusters, results.images.ids).state()
    labels = image_labels(state)
    if not len(labels.images):
        raise ValueError(f"{run_dir.name} has no image labels to refine with: move, accept or label images "
                         "one by one, or make a new cluster of them (Review, the detail view, Curate, the map); "
                         "a cluster's name alone is not a label")
    before = results.metrics.stage("refine").get("from")
    start = before or final_stage(results.metrics, [s for s in CLUSTER_STAGES if s in status.completed])
    fold = emptied_columns(np.asarray(results.stage_probs[start]).argmax(1), state)
    columns = max(results.stage_probs[start].shape[1], int(labels.clusters.max()) + 1,
                  max(fold.values(), default=0) + 1)
    payload = {"images": labels.images.tolist(), "clusters": labels.clusters.tolist(), "from": start,
               "epochs": int(epochs), "num_clusters": columns, "fold": sorted(fold.items())}
    digest = hashlib.sha256(json.dumps(payload).encode()).hexdigest()
    previous = load_json(run_dir / REFINE_LABELS) if (run_dir / REFINE_LABELS).exists() else {}
    if previous.get("digest") != digest:  # epochs saved for other labels are no start for these
        (run_dir / "checkpoints" / "refine.pt").unlink(missing_ok=True)
    save_json(run_dir / REFINE_LABELS, {**payload, "digest": digest})
    return labels


UNDONE = "refine-undone"  # where an undone refine's artifacts go (the next refine replaces them)


def undo_refine(run_dir: Path) -> str:
    """Go back to the clusters before the run's refine: its result is again the stage the refine
    started from (with the calibration that result had), and the refine's files move to
    ``refine-undone/``. The curation is untouched. Returns that stage; ValueError when the run's
    result is not a refine. The caller holds the workspace's training lock."""
    run_dir = Path(run_dir)
    metrics = RunMetrics.load(run_dir)
    if metrics.final is None or metrics.final.stage != "refine" or "refine" not in metrics:
        raise ValueError(f"{run_dir.name} has no refine to undo")
    refine = metrics["refine"]
    aside = run_dir / UNDONE
    aside.mkdir(exist_ok=True)
    for name in ("refine_probs.npy", "refine.pt", REFINE_LABELS):
        if (run_dir / name).exists():
            (run_dir / name).replace(aside / name)
    (run_dir / "checkpoints" / "refine.pt").unlink(missing_ok=True)
    before = refine.get("before") or {"stage": refine["from"], "why": "the result before the refine"}
    kept = {stage: record for stage, record in metrics.items() if stage != "refine"}
    save_json(run_dir / METRICS_FILE, {**kept, "final": before, "refine_undone": refine})
    return before["stage"]
