"""Suggested names for a run's clusters (:mod:`scan_core.method.naming`), from the class scores its
frozen ImageNet backbone recorded when it embedded the images (``class_probs.npy``; a run from
before that records them with ``python -m scan_core names RUN``), and their acceptance as curation
edits. A run whose features have no classifier (the HOG route, SimCLR, a backbone that keeps none)
gets a sentence saying which backbone names need."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.artifacts import CorruptArtifact, load_array
from ..data.rundir import CLASS_PROBS
from ..method.naming import NameSuggestion, class_mass, suggest_names
from ..pretrained import PRETRAINED_BACKBONES, local_weights
from .curation import CuratedState, Curation
from .results import RunResults

#: The ``--backbone`` values whose classifier names come from (EfficientNet-Lite keeps its ImageNet classifier).
NAMING_BACKBONES = tuple(spec.name for spec in PRETRAINED_BACKBONES if spec.library == "efficientnet-lite")


@dataclass(frozen=True)
class RunNames:
    """A run's name suggestions, one per cluster id of the curated state (``suggestions``), or
    ``unavailable``: why there are none (no classifier, or its scores not recorded yet)."""

    suggestions: tuple[NameSuggestion, ...] = ()
    unavailable: str | None = None
    needs_recording: bool = False

    @property
    def confident(self) -> list[NameSuggestion]:
        return [s for s in self.suggestions if s.name is not None]


def names_backbone(config: dict) -> str | None:
    """Why a run with ``config`` (its ``config.json``) cannot have names, or None when its
    features come from a frozen backbone with an ImageNet classifier."""
    backbone, frozen = config.get("backbone"), not config.get("pretext", {}).get("epochs")
    route = ("its HOG features" if config.get("head_input") == "hog" else
             f"SimCLR features ({backbone})" if not frozen else f"the {backbone} backbone, which keeps no ImageNet classifier")
    if config.get("head_input") in ("hog", "pixels") or not frozen or backbone not in NAMING_BACKBONES:
        present = [name for name in NAMING_BACKBONES if local_weights(next(s for s in PRETRAINED_BACKBONES
                                                                             if s.name == name)) is not None]
        return (f"names need a frozen pretrained backbone with an ImageNet classifier ({' or '.join(NAMING_BACKBONES)}"
                f"{'; on this machine: ' + ', '.join(present) if present else ''}); this run has {route}. "
                f"Train with --backbone {NAMING_BACKBONES[-1]} for names")
    return None


def class_probs(run_dir: Path, num_images: int) -> np.ndarray | None:
    """The run's recorded class probabilities ``(N, 1000)`` float16, memory-mapped, or None."""
    try:
        probs = load_array(Path(run_dir) / CLASS_PROBS, mmap=True)
    except (FileNotFoundError, CorruptArtifact):
        return None
    return probs if len(probs) == num_images else None


def run_names(results: RunResults, state: CuratedState) -> RunNames:
    """The suggestions for the clusters of ``state`` (the curated clusters of ``results``' run),
    each member weighted by the model's confidence."""
    why = names_backbone(results.config)
    if why is not None:
        return RunNames(unavailable=why)
    probs = class_probs(results.dir, len(results.images))
    if probs is None:
        return RunNames(unavailable=f"this run's class scores are not recorded yet: run `python -m scan_core names "
                                    f"{results.dir}` once (one pass of its backbone)", needs_recording=True)
    mass = class_mass(probs, state.clusters, results.confidence, state.num_cluster_ids)
    return RunNames(tuple(suggest_names(mass, state.cluster_sizes())))


def unnamed_confident(names: RunNames, state: CuratedState) -> dict[int, str]:
    """Cluster id -> suggested name, for every confident suggestion of a cluster the user has not
    named whose name no named cluster with images has."""
    sizes = state.cluster_sizes()
    taken = {name for cluster, name in state.names.items() if sizes[cluster]}
    return {s.cluster: s.name for s in names.confident
            if s.cluster not in state.names and s.name is not None and s.name not in taken}


def accept_all(curation: Curation, names: RunNames, who: str = "anonymous", seen: int | None = None) -> int | None:
    """Name every unnamed cluster with a confident suggestion, in one edit (its id; None: nothing to name).
    A cluster the user named keeps its name."""
    state = curation.state()
    chosen = unnamed_confident(names, state)
    return curation.name_clusters(chosen, who, seen=seen) if chosen else None
