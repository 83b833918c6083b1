"""A run read back for exploring: the artifacts every page draws from, and the cheap views of them.

Everything here reads what the job wrote (``images/``, ``features.npy``, ``neighbors.npy``,
``scan_probs.npy``, ``selflabel_probs.npy``, ``projection.npy``, ``metrics.json``); nothing trains.
Arrays are memory-mapped, so loading a 70k-image run takes well under a second. Functions that
depend on the cluster assignment take it as an argument, so pages pass the *curated* clusters.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from ..config import RunConfig
from ..data.artifacts import CorruptArtifact, load_array, save_array
from ..data.images import ImageSet, resize_square
from ..data.run_metrics import RunMetrics
from ..data.rundir import CLUSTER_STAGES, final_stage
from ..data.shards import Rows
from ..method.confidence import tempered
from ..method.cosine import l2_normalize
from ..method.metrics import contingency, evaluate, hungarian_mapping, majority_mapping

THUMBNAIL_SIZE = 64


def _read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


class RunNotReady(ValueError):
    """The run lacks what a page needs (no images yet, no clustering yet, ...)."""


@dataclass
class RunResults:
    """Artifacts of one run directory; absent ones are None (the run may still be going)."""

    dir: Path
    config: RunConfig   # its config.json (:meth:`~scan_core.config.RunConfig.load`)
    images: ImageSet
    metrics: RunMetrics
    features: np.ndarray | None = None
    neighbors: np.ndarray | None = None
    projection: np.ndarray | None = None
    stage_probs: dict[str, np.ndarray] = field(default_factory=dict)
    feature_neighbors: np.ndarray | None = None   # (N, k) nearest in the features, when mined elsewhere
    _calibrated: np.ndarray | None = field(default=None, repr=False)   # probs, computed once

    @classmethod
    def load(cls, run_dir: Path) -> RunResults:
        """Read every artifact present; RunNotReady when not even the images are there, or when its
        ``config.json`` is no config."""
        run_dir = Path(run_dir)
        try:
            images = ImageSet.load(run_dir / "images")
        except (FileNotFoundError, CorruptArtifact, KeyError) as error:
            raise RunNotReady(f"{run_dir.name} has no readable images yet ({error})") from None
        try:
            config = RunConfig.load(run_dir)
        except (FileNotFoundError, ValueError) as error:
            raise RunNotReady(f"{run_dir.name} has no readable config.json ({error})") from None
        n = len(images)

        def optional(name: str, rows: int | None = n) -> np.ndarray | None:
            try:
                array = load_array(run_dir / name, mmap=True)
            except (FileNotFoundError, CorruptArtifact):
                return None
            return array if rows is None or len(array) == rows else None

        metrics = RunMetrics.load(run_dir)
        probs = {stage: p for stage in CLUSTER_STAGES if (p := optional(f"{stage}_probs.npy")) is not None}
        return cls(run_dir, config, images, metrics, optional("features.npy"), optional("neighbors.npy"),
                   optional("projection.npy"), probs, optional("feature_neighbors.npy"))

    # ---- the final assignment ----------------------------------------------------------------
    @property
    def final_stage(self) -> str | None:
        """The stage whose clusters are the run's result (:func:`~scan_core.data.rundir.final_stage`)
        among those with probabilities, or None."""
        return final_stage(self.metrics, tuple(self.stage_probs))

    @property
    def probs(self) -> np.ndarray:
        """Cluster probabilities ``(N, K)`` of the final stage, calibrated by the run's temperature
        (:mod:`scan_core.method.confidence`; as stored for a run that recorded none); RunNotReady
        before SCAN ends."""
        if self.final_stage is None:
            raise RunNotReady(f"{self.dir.name} has no clustering yet (the SCAN stage has not finished)")
        if self._calibrated is None:
            stored = np.asarray(self.stage_probs[self.final_stage])
            temperature = self.metrics.final.temperature if self.metrics.final else None
            self._calibrated = tempered(stored, temperature) if temperature else stored
        return self._calibrated

    @cached_property
    def clusters(self) -> np.ndarray:
        """The model's cluster id per image ``(N,)`` (read-only, computed once)."""
        return _read_only(self.probs.argmax(1))

    @cached_property
    def confidence(self) -> np.ndarray:
        """The model's calibrated probability of its chosen cluster ``(N,)``: about how likely a near
        image shares the cluster, on every route (read-only, computed once)."""
        return _read_only(self.probs.max(1))

    @property
    def num_clusters(self) -> int:
        """The model's clusters: the final stage's columns (a refine may add clusters the curation
        made), else the config's K."""
        return self.probs.shape[1] if self.final_stage is not None else self.config.num_clusters

    @property
    def class_names(self) -> list[str]:
        return list(self.images.class_names)

    def true_label_names(self, rows: slice | np.ndarray = slice(None)) -> np.ndarray | None:
        """Class name per image ``(N,)`` (of the images ``rows``, a slice or indices, when given)
        when labels exist."""
        if not self.images.has_labels:
            return None
        return np.asarray(self.class_names, dtype=object)[self.images.labels[rows]]

    # ---- images ------------------------------------------------------------------------------
    def thumbnails(self) -> Rows:
        """Gallery images ``(N, T, T, C)`` uint8: the working images when they are small, else a
        ``THUMBNAIL_SIZE`` copy made once and kept as ``thumbnails.npy``."""
        images = self.images.images
        if images.shape[1] <= THUMBNAIL_SIZE:
            return images
        path = self.dir / "thumbnails.npy"
        try:
            thumbs = load_array(path, mmap=True)
            if thumbs.shape[0] == len(images):
                return thumbs
        except (FileNotFoundError, CorruptArtifact):
            pass
        save_array(path, np.asarray(resize_square(images, THUMBNAIL_SIZE, chunk=2048)))
        return load_array(path, mmap=True)

    def find_image(self, text: str) -> int | None:
        """The image ``text`` names, or None: its id, its file name (or the end of its path or id
        after a ``/``), else ``#12`` or ``12`` as an index in ``[0, N)``. An id or name wins over an
        index (an image may be called ``12``)."""
        text = str(text).strip()
        if not text:
            return None
        ids, paths = self.images.ids.astype(str), self.images.paths.astype(str)
        matches = np.flatnonzero((ids == text) | np.char.endswith(paths, "/" + text) | (paths == text)
                                 | np.char.endswith(ids, "/" + text))
        if len(matches):
            return int(matches[0])
        digits = text.removeprefix("#")
        if digits.isascii() and digits.isdigit() and int(digits) < len(ids):
            return int(digits)
        return None

    # ---- clusters ----------------------------------------------------------------------------
    def members(self, clusters: np.ndarray, cluster: int, most_confident_first: bool = True) -> np.ndarray:
        """Indices of ``cluster``'s members ``(M,)`` ordered by the model's confidence."""
        index = np.flatnonzero(np.asarray(clusters) == cluster)
        order = np.argsort(-self.confidence[index] if most_confident_first else self.confidence[index], kind="stable")
        return index[order]

    def central_members(self, clusters: np.ndarray, cluster: int, count: int) -> np.ndarray:
        """The ``count`` members nearest (cosine) to the cluster's mean feature ``(<=count,)``."""
        index = np.flatnonzero(np.asarray(clusters) == cluster)
        if self.features is None or len(index) == 0:
            return index[:count]
        features = l2_normalize(self.features[index])
        centre = features.mean(0)
        return index[np.argsort(-(features @ centre), kind="stable")[:count]]

    def cluster_table(self, clusters: np.ndarray) -> list[dict]:
        """Per cluster id present in ``clusters``: size, mean confidence, share of its members'
        neighbours that lie in the same cluster (a label-free cohesion score)."""
        clusters = np.asarray(clusters)
        agreement = self.neighbor_agreement(clusters)
        rows = []
        for cluster in np.unique(clusters):
            members = clusters == cluster
            row = {"cluster": int(cluster), "size": int(members.sum()),
                   "mean_confidence": float(self.confidence[members].mean())}
            if agreement is not None:
                row["neighbour_agreement"] = float(agreement[members].mean())
            rows.append(row)
        return rows

    # ---- neighbours --------------------------------------------------------------------------
    def neighbor_agreement(self, clusters: np.ndarray) -> np.ndarray | None:
        """Share of each image's mined neighbours in its own cluster ``(N,)`` (None: not mined)."""
        if self.neighbors is None:
            return None
        clusters = np.asarray(clusters)
        return (clusters[np.asarray(self.neighbors)] == clusters[:, None]).mean(1)

    def head_points(self) -> np.ndarray | None:
        """What the run's heads learn on ``(N, D)``: its manifold when it has one, else its features."""
        path = self.dir / "manifold.npy"
        if path.exists():
            try:
                return load_array(path, mmap=True)
            except CorruptArtifact:
                return None
        return self.features

    def neighbor_lists(self) -> list[np.ndarray]:
        """The run's neighbourhoods ``[(N, k), ...]``: the mined one, then the features' own when
        it mined elsewhere (empty before mining)."""
        return [found for found in (self.neighbors, self.feature_neighbors) if found is not None]

    def neighbor_label_purity(self) -> np.ndarray | None:
        """Share of each image's neighbours carrying its true label ``(N,)`` (None: no labels)."""
        if self.neighbors is None or not self.images.has_labels:
            return None
        labels = self.images.labels
        return (labels[np.asarray(self.neighbors)] == labels[:, None]).mean(1)

    # ---- evaluation --------------------------------------------------------------------------
    def evaluation(self, clusters: np.ndarray) -> dict:
        """Scores of ``clusters`` against the labels, with the confusion matrix ``(K, C)``, the
        cluster -> class map (Hungarian when K equals the number of classes, else majority vote),
        each image's class under that map (``predicted`` ``(N,)``, -1 for a cluster mapped to none;
        the one definition the pages use), per-class precision / recall and ``chance_acc``, the ACC
        of calling every image the largest class (its share of the images). RunNotReady without labels."""
        if not self.images.has_labels:
            raise RunNotReady(f"{self.dir.name} has no labels: there is nothing to evaluate against")
        clusters, labels = np.asarray(clusters), self.images.labels
        scores = evaluate(clusters, labels)
        table = contingency(clusters, labels, num_classes=len(self.class_names))
        used = np.flatnonzero(table.sum(1))
        one_to_one = len(used) == len(self.class_names)
        mapping = hungarian_mapping(clusters, labels) if one_to_one else majority_mapping(clusters, labels)
        to_class = np.array([mapping.get(int(c), -1) for c in range(table.shape[0])])
        predicted = to_class[clusters]
        per_class = []
        for c, name in enumerate(self.class_names):  # from the counts: no pass over the images
            mapped = to_class == c
            hits, called, actual = int(table[mapped, c].sum()), int(table[mapped].sum()), int(table[:, c].sum())
            per_class.append({"class": name, "precision": hits / called if called else 0.0,
                              "recall": hits / actual if actual else 0.0, "images": actual})
        return {**scores, "confusion": table[used], "clusters": used, "mapping": mapping, "predicted": predicted,
                "mapping_kind": "Hungarian (one-to-one)" if one_to_one else "majority vote",
                "per_class": per_class, "chance_acc": float(table.sum(0).max() / len(labels))}
