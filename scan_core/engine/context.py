"""What the stages of a run share: :class:`RunContext` carries the run's directory, config, device and
progress, and what earlier stages produced (loaded back from disk when a stage was skipped)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import RunConfig
from ..data.artifacts import Checkpoint, load_array, save_json
from ..data.images import ImageSet
from ..data.run_metrics import METRICS_FILE, FinalResult, RunMetrics
from ..method.confidence import chance_warning, feature_lift, neighbour_temperature
from ..method.manifold import fit_manifold
from ..method.metrics import evaluate
from ..method.num_clusters import MAP_DIMS
from ..method.precision import device_precision
from ..method.pretext import Encoder
from .progress import Progress


@dataclass
class RunContext:
    """One run in progress. ``source``: the images when the caller has already loaded them (the
    images stage saves them and goes on with the memory-mapped copy); ``started``: when the
    current stage began (:meth:`record` adds the seconds since)."""

    dir: Path
    config: RunConfig
    device: torch.device
    progress: Progress
    source: ImageSet | None = None
    images: ImageSet | None = None
    features: np.ndarray | None = None    # (N, D) the pretext features
    encoder: Encoder | None = None        # images -> features
    manifold: np.ndarray | None = None    # (N, d) their UMAP embedding, when the config asks for one
    neighbors: np.ndarray | None = None   # (N, k) mined neighbour indices
    probs: np.ndarray | None = None       # (N, K) the latest cluster stage's assignment
    embedding: np.ndarray | None = None   # (N, 10) the heads' input's UMAP for clustering, once fitted
    started: float = 0.0

    @property
    def precision(self) -> str:
        """The forward passes' precision on this run's device (:mod:`scan_core.method.precision`)."""
        return device_precision(self.config.precision, self.device)

    @property
    def head_features(self) -> np.ndarray:
        """What frozen heads learn on ``(N, D)``: the manifold when the run has one, else the features."""
        return self.features if self.manifold is None else self.manifold

    def cluster_embedding(self) -> np.ndarray:
        """The heads' input laid out by UMAP for clustering ``(N, d)`` (30 neighbours, min_dist 0): the
        run's manifold when it has one, else fitted once and shared by the K suggestion and the
        scan stage's candidates."""
        if self.manifold is not None:
            return self.manifold
        if self.embedding is None:
            self.embedding = fit_manifold(self.head_features, MAP_DIMS, self.config.seed, self.config.map_sample)
        return self.embedding

    def checkpoint(self, stage: str) -> Checkpoint:
        """The per-epoch checkpoint of a training stage; resuming from it emits ``resumed``."""
        return Checkpoint(self.dir / "checkpoints" / f"{stage}.pt",
                          on_resume=lambda epoch: self.progress.emit("resumed", epoch=epoch))

    def metrics(self) -> RunMetrics:
        """``metrics.json`` so far (empty before the first stage records)."""
        return RunMetrics.load(self.dir)

    def record(self, stage: str, values: dict) -> None:
        """Store ``values`` and the stage's seconds so far as ``metrics.json[stage]``."""
        values = {**values, "seconds": round(time.time() - self.started, 2)}
        save_json(self.dir / METRICS_FILE, {**self.metrics(), stage: values})

    def amend(self, stage: str, values: dict) -> None:
        """Add ``values`` to ``metrics.json[stage]``, recorded earlier (its seconds kept)."""
        metrics = self.metrics()
        save_json(self.dir / METRICS_FILE, {**metrics, stage: {**metrics.stage(stage), **values}})

    def record_result(self, stage: str, why: str, probs: np.ndarray) -> None:
        """Name the cluster stage whose assignment ``probs`` ``(N, K)`` is the run's result, and why:
        ``metrics.json[final]``, with the temperature that calibrates its confidence and a warning
        when its clusters look no better than chance (:mod:`scan_core.method.confidence`)."""
        metrics = self.metrics()
        scan = metrics.stage("scan")
        agreement = None
        if "head_agreement" in scan:  # the kept SCAN head's mean ARI with the other candidates
            agreement = scan["head_agreement"][scan["snapshot_epochs"].index(scan["head_epoch"])][scan["head"]]
        own = self.dir / "feature_neighbors.npy"  # the features' own neighbours, when mining was elsewhere
        lift = feature_lift(probs.argmax(1), load_array(own) if own.exists() else self.neighbors)
        warning = chance_warning(agreement, lift, probs.shape[1])
        temperature = neighbour_temperature(probs, self.neighbors, self.config.seed)
        final = FinalResult(stage, why, temperature=round(temperature, 4), feature_lift=round(lift, 4), warning=warning)
        save_json(self.dir / METRICS_FILE, {**metrics, "final": final.to_json()})

    def scores(self, clusters: np.ndarray) -> dict:
        """ACC, NMI, ARI, majority ACC of ``clusters`` ``(N,)`` against the labels (empty without)."""
        labels = self.images.labels
        return evaluate(clusters, labels) if labels is not None else {}
