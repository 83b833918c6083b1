"""Names for clusters from what an ImageNet classifier already knows (plain numpy).

A frozen ImageNet backbone's classifier gives every image probabilities over 1,000 classes, each a
WordNet noun synset. A cluster's class mass is the mean of its members' probabilities weighted by
their confidence (:func:`cluster_class_mass`); lifted through the WordNet noun hierarchy
(:class:`Taxonomy`, read from ``imagenet_wordnet.json``, written from Debian's ``wordnet-base`` by
:mod:`scan_core.method.imagenet_wordnet`), every concept covers the mass of the classes at or under
it. A cluster's suggested name (:func:`suggest_names`) is the most specific concept covering at least
``min_share`` of its mass, with the share and the top classes under it as evidence; none when no
concept short of the too-general ones (``entity``, ``object``, ``artifact``, ``organism``, ...) does,
or when the picture's medium or style (comic book, web site, jigsaw puzzle, envelope, ...) is what
the classifier sees. Two clusters never get the same name: each takes the concept under the shared
one that sets it most apart from the others (``cat (tabby)``), or no name when none does.
"""
from __future__ import annotations

import gzip
import json
import typing
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
from scipy import sparse

HIERARCHY_FILE = Path(__file__).with_name("imagenet_wordnet.json")
VOCABULARY_FILE = Path(__file__).with_name("wordnet_nouns.json.gz")
#: The share of a cluster's class mass its name must cover (a clear majority of the cluster).
MIN_SHARE = 0.6
#: Classes that describe how a picture is made or shown rather than what it shows; a cluster whose
#: top class is one, or whose mass they hold at least MEDIUM_SHARE of, gets no name, and their mass
#: never counts towards a name.
MEDIUM_CLASSES = ("comic book", "web site", "jigsaw puzzle", "envelope", "book jacket", "menu", "crossword puzzle",
                  "packet", "binder", "street sign", "screen", "monitor", "television", "window shade",
                  "shower curtain", "theater curtain", "doormat", "quilt", "prayer rug", "handkerchief",
                  "paper towel", "toilet tissue", "honeycomb", "chain mail", "velvet", "wool", "pinwheel",
                  "scoreboard", "digital clock", "slot", "rule", "matchstick", "tray", "plate rack", "mosquito net")
MEDIUM_SHARE = 0.25
#: Concepts too general to name anything (and everything above them).
TOO_GENERAL = ("entity", "physical entity", "abstraction", "object", "whole", "artifact", "organism", "living thing",
               "matter", "instrumentality", "causal agent", "part",
               "attribute", "communication", "relation", "measure", "creation", "product", "commodity",
               "device", "container", "structure", "covering", "equipment", "implement", "material", "substance",
               "food", "solid", "natural object", "geological formation")
EVIDENCE_CLASSES = 3
#: The most class probabilities :func:`class_mass` holds at once (128 MB as float64).
BATCH_VALUES = 2 ** 24


@dataclass(frozen=True, eq=False)
class Taxonomy:
    """The WordNet noun hierarchy above a classifier's classes (the 1,000 ImageNet ones, or the
    nouns of a zero-shot vocabulary): ``wnids`` / ``names`` ``(S,)`` of every synset at or above a
    class, ``classes`` ``(C,)`` the synset index of each output, ``covers`` ``(C, S)`` sparse bool
    (class ``c`` lies at or under synset ``s``), ``above`` ``(S, S)`` sparse bool (``above[s, t]``:
    ``t`` is ``s`` or one of its hypernyms), ``depth`` ``(S,)`` the longest hypernym path from ``s``
    to ``entity``. Sparse (CSR), so a vocabulary of thousands of nouns stays small."""

    wnids: tuple[str, ...]
    names: tuple[str, ...]
    classes: np.ndarray
    covers: sparse.csr_array
    above: sparse.csr_array
    depth: np.ndarray
    _index: dict[str, int] = field(default_factory=dict, repr=False)
    _below: sparse.csr_array | None = field(default=None, repr=False)

    @classmethod
    def from_hierarchy(cls, classes: list[str], synsets: dict[str, dict]) -> Taxonomy:
        """From ``classes`` (wnids in output order) and ``synsets`` {wnid: {"name", "parents"}},
        the layout of ``imagenet_wordnet.json``; ValueError when a class or parent is missing."""
        wnids = tuple(sorted(synsets))
        index = {w: i for i, w in enumerate(wnids)}
        missing = [w for w in classes if w not in index] + [p for s in synsets.values() for p in s["parents"] if p not in index]
        if missing:
            raise ValueError(f"the hierarchy lacks synsets {missing[:5]}")
        ancestors: dict[int, set[int]] = {}
        depth = np.zeros(len(wnids), np.int64)

        def lift(i: int) -> set[int]:  # i's ancestors (and i), depth[i] from the parents'
            if i not in ancestors:
                found = {i}
                for parent in synsets[wnids[i]]["parents"]:
                    p = index[parent]
                    found |= lift(p)
                    depth[i] = max(depth[i], depth[p] + 1)
                ancestors[i] = found
            return ancestors[i]

        rows = [sorted(lift(i)) for i in range(len(wnids))]
        above = sparse.csr_array((np.ones(sum(map(len, rows)), bool), np.concatenate(rows).astype(np.int64),
                                  np.cumsum([0] + [len(r) for r in rows])), shape=(len(wnids), len(wnids)))
        class_index = np.array([index[w] for w in classes], np.int64)
        return cls(wnids, tuple(synsets[w]["name"] for w in wnids), class_index, above[class_index], above, depth,
                   index, above.T.tocsr())

    def index(self, key: str) -> int:
        """The synset index of a wnid or of a name (the first synset of that name); ValueError if none."""
        if key in self._index:
            return self._index[key]
        try:
            return self.names.index(key)
        except ValueError:
            raise ValueError(f"no synset {key!r} in the hierarchy") from None

    def class_index(self, name: str) -> int:
        """The output index of the class called ``name`` (its first); ValueError if none."""
        found = np.flatnonzero(np.array(self.names, dtype=object)[self.classes] == name)
        if not len(found):
            raise ValueError(f"no class {name!r} among the classifier's {len(self.classes)}")
        return int(found[0])

    def ancestors(self, synset: int) -> np.ndarray:
        """The synset indices at or above ``synset`` (itself and its hypernyms), ascending."""
        return self.above.indices[self.above.indptr[synset]:self.above.indptr[synset + 1]]

    def descendants(self, synset: int) -> np.ndarray:
        """The synset indices at or under ``synset`` (itself and its hyponyms in the hierarchy), ascending."""
        below = typing.cast(sparse.csr_array, self._below)
        return below.indices[below.indptr[synset]:below.indptr[synset + 1]]

    def classes_under(self, synset: int) -> np.ndarray:
        """The output indices of the classes at or under ``synset``, ascending."""
        return np.flatnonzero(np.isin(self.classes, self.descendants(synset)))

    def is_under(self, synset: int, concept: int) -> bool:
        """Whether ``synset`` is ``concept`` or one of its hyponyms."""
        return bool(np.isin(concept, self.ancestors(synset)))

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@cache
def imagenet_taxonomy() -> Taxonomy:
    """The hierarchy above the 1,000 ImageNet-1k classes, in a classifier's output order."""
    data = json.loads(HIERARCHY_FILE.read_text())
    return Taxonomy.from_hierarchy(data["classes"], data["synsets"])


@cache
def wordnet_taxonomy() -> Taxonomy:
    """The hierarchy above the zero-shot vocabulary (``wordnet_nouns.json.gz``, written by
    :mod:`scan_core.method.wordnet_nouns`): WordNet's common physical nouns and the ImageNet
    classes, in the vocabulary's order."""
    data = json.loads(gzip.decompress(VOCABULARY_FILE.read_bytes()))
    return Taxonomy.from_hierarchy(data["classes"], data["synsets"])


@cache
def medium_wnids() -> frozenset[str]:
    """The synsets of :data:`MEDIUM_CLASSES` (the ImageNet classes of those names), whatever the taxonomy."""
    imagenet = imagenet_taxonomy()
    return frozenset(imagenet.wnids[imagenet.classes[imagenet.class_index(name)]] for name in MEDIUM_CLASSES)


@cache
def general_wnids() -> frozenset[str]:
    """The synsets of :data:`TOO_GENERAL` (as the ImageNet hierarchy resolves their names)."""
    imagenet = imagenet_taxonomy()
    return frozenset(imagenet.wnids[imagenet.index(name)] for name in TOO_GENERAL)


@dataclass(frozen=True)
class NameSuggestion:
    """The suggestion for one cluster: ``name`` (None: no confident name, ``why`` says why), the
    concept's ``wnid``, the ``share`` of the cluster's class mass under it, and ``evidence``: the
    top classes under it (or the cluster's top classes when there is no name) with their shares."""

    cluster: int
    size: int
    name: str | None
    share: float
    evidence: tuple[tuple[str, float], ...]
    wnid: str | None = None
    why: str = ""

    def evidence_text(self) -> str:
        """``tabby 31%, tiger cat 22%, Egyptian cat 18%``."""
        return ", ".join(f"{name} {share:.0%}" for name, share in self.evidence)

    def text(self) -> str:
        """``cat — 71%: tabby 31%, ...`` or ``no confident name (why)``."""
        if self.name is None:
            return f"no confident name ({self.why})"
        return f"{self.name} — {self.share:.0%}: {self.evidence_text()}"

    def to_dict(self) -> dict:
        return {"cluster": self.cluster, "size": self.size, "name": self.name, "share": round(self.share, 4),
                "evidence": [{"class": name, "share": round(share, 4)} for name, share in self.evidence],
                "wnid": self.wnid, "why": self.why or None}


class ClassProbs(typing.Protocol):
    """``(N, C)`` class probabilities read a slice of rows at a time: an array (any float dtype,
    memory-mapped is fine) or :class:`~scan_core.method.zero_shot.ZeroShotProbs`."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def ndim(self) -> int: ...

    def __len__(self) -> int: ...

    def __getitem__(self, rows: slice, /) -> typing.Any: ...


def class_mass(probs: ClassProbs, clusters: np.ndarray, weights: np.ndarray, num_clusters: int,
               batch: int = 65536) -> np.ndarray:
    """Per cluster, the sum of its members' class probabilities weighted by ``weights``:
    ``probs`` ``(N, C)`` (:class:`ClassProbs`: an array or zero-shot ones), ``clusters`` ``(N,)`` in
    ``[0, num_clusters)``, ``weights`` ``(N,)`` >= 0 -> ``(num_clusters, C)`` float64, read a
    ``batch`` of rows at a time (at most :data:`BATCH_VALUES` values)."""
    clusters, weights = np.asarray(clusters), np.asarray(weights, np.float64)
    if probs.ndim != 2 or len(probs) != len(clusters) or len(weights) != len(clusters):
        raise ValueError(f"probs {probs.shape}, clusters {clusters.shape} and weights {weights.shape} must have N rows")
    if len(clusters) and (clusters.min() < 0 or clusters.max() >= num_clusters):
        raise ValueError(f"cluster ids must lie in [0, {num_clusters})")
    if (weights < 0).any():
        raise ValueError("weights must be non-negative")
    total = np.zeros((num_clusters, probs.shape[1]))
    batch = max(1, min(batch, BATCH_VALUES // max(1, probs.shape[1])))
    for start in range(0, len(clusters), batch):
        rows = slice(start, start + batch)
        n = len(clusters[rows])
        member = sparse.csr_matrix((weights[rows], (clusters[rows], np.arange(n))), shape=(num_clusters, n))
        total += member @ np.asarray(probs[rows], np.float64)
    return total


def suggest_names(mass: np.ndarray, sizes: np.ndarray, taxonomy: Taxonomy | None = None,
                  min_share: float = MIN_SHARE) -> list[NameSuggestion]:
    """A :class:`NameSuggestion` per cluster from its class ``mass`` ``(K, C)`` (rows need not sum
    to 1: each is normalised) and its ``sizes`` ``(K,)`` (a cluster of size 0 gets no name)."""
    taxonomy = taxonomy or imagenet_taxonomy()
    mass, sizes = np.asarray(mass, np.float64), np.asarray(sizes)
    if mass.ndim != 2 or mass.shape[1] != taxonomy.num_classes or len(sizes) != len(mass):
        raise ValueError(f"mass must be (K, {taxonomy.num_classes}) with K sizes, got {mass.shape} and {sizes.shape}")
    if not 0 < min_share <= 1:
        raise ValueError(f"min_share must lie in (0, 1], got {min_share}")
    totals = mass.sum(1, keepdims=True)
    mass = np.divide(mass, totals, out=np.zeros_like(mass), where=totals > 0)
    medium = np.isin(np.array(taxonomy.wnids)[taxonomy.classes], list(medium_wnids()))
    general = np.zeros(len(taxonomy.wnids), bool)  # the too-general concepts and everything above them
    for wnid in general_wnids():
        if wnid in taxonomy._index:
            general[taxonomy.ancestors(taxonomy.index(wnid))] = True
    # (K, S): the mass of each concept, media left out
    shares = np.asarray(np.where(medium, 0.0, mass) @ taxonomy.covers.astype(np.float64))
    class_names = np.array(taxonomy.names, dtype=object)[taxonomy.classes]

    def top(k: int, under: int | None = None) -> tuple[tuple[str, float], ...]:
        row = mass[k] if under is None else np.where(np.isin(np.arange(taxonomy.num_classes),
                                                             taxonomy.classes_under(under)), mass[k], 0.0)
        order = np.argsort(-row, kind="stable")[:EVIDENCE_CLASSES]
        return tuple((str(class_names[c]), float(row[c])) for c in order if row[c] > 0)

    chosen: dict[int, int] = {}
    out: dict[int, NameSuggestion] = {}
    for k in range(len(mass)):
        if sizes[k] == 0 or totals[k, 0] <= 0:
            out[k] = NameSuggestion(k, int(sizes[k]), None, 0.0, (), why="no images")
            continue
        if medium[mass[k].argmax()] or mass[k, medium].sum() >= MEDIUM_SHARE:
            out[k] = NameSuggestion(k, int(sizes[k]), None, float(mass[k, medium].sum()), top(k),
                                    why="the classifier sees the picture's medium or style, not what it shows")
            continue
        candidates = np.flatnonzero((shares[k] >= min_share) & ~general)
        if not len(candidates):
            out[k] = NameSuggestion(k, int(sizes[k]), None, 0.0, top(k),
                                    why=f"no concept covers {min_share:.0%} of the classifier's scores")
            continue
        concept = int(candidates[np.lexsort((-shares[k, candidates], -taxonomy.depth[candidates]))[0]])
        chosen[k] = concept
        out[k] = NameSuggestion(k, int(sizes[k]), taxonomy.names[concept], float(shares[k, concept]),
                                top(k, concept), taxonomy.wnids[concept])
    for concept in set(chosen.values()):
        group = [k for k, c in chosen.items() if c == concept]
        if len(group) < 2:
            continue
        under = taxonomy.descendants(concept)
        under = under[under != concept]
        for k in group:
            others = shares[[j for j in group if j != k]][:, under].max(0)
            apart = shares[k, under] - others
            if not len(under) or apart.max() <= 0:
                twins = ", ".join(str(j) for j in group if j != k)
                out[k] = NameSuggestion(k, out[k].size, None, out[k].share, out[k].evidence,
                                        why=f"{taxonomy.names[concept]}, as cluster {twins}, and nothing tells them apart")
                continue
            best = int(under[np.argmax(apart)])
            out[k] = NameSuggestion(k, out[k].size, f"{taxonomy.names[concept]} ({taxonomy.names[best]})",
                                    out[k].share, top(k, best), taxonomy.wnids[best])
    return [out[k] for k in range(len(mass))]
