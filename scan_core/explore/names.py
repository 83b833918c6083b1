"""Suggested names for a run's clusters (:mod:`scan_core.method.naming`) and their acceptance as
curation edits. A run on a frozen CLIP backbone is named zero-shot over WordNet's nouns
(:mod:`scan_core.method.zero_shot`: its features against the vocabulary's text embeddings, made
once per machine by ``python -m scan_core names RUN``); a run on a frozen ImageNet backbone from the
class scores its classifier recorded when it embedded the images (``class_probs.npy``; a run from
before that records them with the same command). Either way the same lift through WordNet names
them (:class:`ClassScores`). A run whose features have neither (the HOG route, SimCLR, a backbone
that keeps no classifier) gets a sentence saying which backbones names need."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import RunConfig
from ..data.artifacts import CorruptArtifact, load_array
from ..data.rundir import CLASS_PROBS
from ..method.naming import ClassProbs, NameSuggestion, Taxonomy, class_mass, imagenet_taxonomy, suggest_names, wordnet_taxonomy
from ..method.zero_shot import TextEmbeddings, ZeroShotProbs, text_cache_path, zero_shot_backbone
from ..pretrained import (
    CLASSIFYING,
    OPEN_CLIP_MODELS,
    local_weights,
    open_clip_needs,
    open_clip_weights,
    pretrained_spec,
)
from .curation import CuratedState, Curation
from .results import RunResults

#: The ``--backbone`` values whose classifier names come from (EfficientNet-Lite keeps its ImageNet classifier).


@dataclass(frozen=True)
class RunNames:
    """A run's name suggestions, one per cluster id of the curated state (``suggestions``), and
    what they come from (``source``), or ``unavailable``: why there are none (no classifier, or its
    scores not recorded yet: ``needs_recording``)."""

    suggestions: tuple[NameSuggestion, ...] = ()
    unavailable: str | None = None
    needs_recording: bool = False
    source: str = ""

    @property
    def confident(self) -> list[NameSuggestion]:
        return [s for s in self.suggestions if s.name is not None]


@dataclass(frozen=True)
class ClassScores:
    """What a run's names come from: class probabilities ``probs`` ``(N, C)`` (recorded, or
    zero-shot ones computed as read), the ``taxonomy`` above its ``C`` classes, and ``source``, in words."""

    probs: ClassProbs
    taxonomy: Taxonomy
    source: str


def names_backbone(config: RunConfig) -> str | None:
    """Why a run with ``config`` cannot have names, or None when its features come from a frozen
    backbone with an ImageNet classifier."""
    backbone, frozen = config.backbone, not config.pretext.epochs
    route = ("its HOG features" if config.head_input == "hog" else
             f"SimCLR features ({backbone})" if not frozen else f"the {backbone} backbone, which keeps no ImageNet classifier")
    if not config.uses_backbone or not frozen or backbone not in CLASSIFYING:
        present = [name for name in CLASSIFYING if local_weights(pretrained_spec(name)) is not None]
        clip = [name for name in OPEN_CLIP_MODELS if open_clip_weights(pretrained_spec(name)) is not None]
        return (f"names need a frozen pretrained backbone with an ImageNet classifier ({' or '.join(CLASSIFYING)}"
                f"{'; on this machine: ' + ', '.join(present) if present else ''}), or a frozen CLIP backbone for "
                f"zero-shot names over WordNet's nouns ({' or '.join(OPEN_CLIP_MODELS)}; "
                f"{'on this machine' if clip else 'with open_clip and its text tower, not on this machine'}); "
                f"this run has {route}. Train with --backbone {(clip or list(CLASSIFYING))[-1]} for names")
    return None


def class_probs(run_dir: Path, num_images: int) -> np.ndarray | None:
    """The run's recorded class probabilities ``(N, 1000)`` float16, memory-mapped, or None."""
    try:
        probs = load_array(Path(run_dir) / CLASS_PROBS, mmap=True)
    except (FileNotFoundError, CorruptArtifact):
        return None
    return probs if len(probs) == num_images else None


def names_input(results: RunResults) -> Path:
    """The file whose arrival changes the run's names: the vocabulary's text embeddings for a run on
    a CLIP backbone, else the run's class scores."""
    clip = zero_shot_backbone(results.config)
    return text_cache_path(clip.name) if clip is not None else Path(results.dir) / CLASS_PROBS


def class_scores(results: RunResults) -> ClassScores | RunNames:
    """What the names of ``results``' run come from, or the :class:`RunNames` saying why there are none."""
    record = f"run `python -m scan_core names {results.dir}` once"
    clip = zero_shot_backbone(results.config)
    if clip is not None:
        taxonomy = wordnet_taxonomy()
        text = TextEmbeddings.load(text_cache_path(clip.name), taxonomy.num_classes)
        if text is None and open_clip_weights(clip) is None:
            return RunNames(unavailable=f"zero-shot names for this run's {clip.name} features need {open_clip_needs(clip)}")
        if text is None:
            return RunNames(unavailable=f"the text embeddings of the {taxonomy.num_classes:,} WordNet nouns for "
                                        f"{clip.name} are not on this machine yet: {record} (one pass of CLIP's text "
                                        "tower)", needs_recording=True)
        if results.features is None:
            return RunNames(unavailable="this run has no features yet")
        return ClassScores(ZeroShotProbs(results.features[:, :text.projection.shape[0]], text), taxonomy,
                           f"{clip.name} zero-shot over {taxonomy.num_classes:,} WordNet nouns")
    why = names_backbone(results.config)
    if why is not None:
        return RunNames(unavailable=why)
    probs = class_probs(results.dir, len(results.images))
    if probs is None:
        return RunNames(unavailable=f"this run's class scores are not recorded yet: {record} (one pass of its "
                                    "backbone)", needs_recording=True)
    return ClassScores(probs, imagenet_taxonomy(), "the backbone's ImageNet classes")


def run_names(results: RunResults, state: CuratedState) -> RunNames:
    """The suggestions for the clusters of ``state`` (the curated clusters of ``results``' run),
    each member weighted by the model's confidence."""
    scores = class_scores(results)
    if isinstance(scores, RunNames):
        return scores
    mass = class_mass(scores.probs, state.clusters, results.confidence, state.num_cluster_ids)
    return RunNames(tuple(suggest_names(mass, state.cluster_sizes(), scores.taxonomy)), source=scores.source)


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
