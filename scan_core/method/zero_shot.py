"""Zero-shot class probabilities over a vocabulary of WordNet nouns from CLIP (Radford et al.,
ICML 2021), for cluster names (plain numpy; the text tower runs once, in
:func:`scan_core.engine.naming.record_clip_text`).

Each noun of :func:`~scan_core.method.naming.wordnet_taxonomy` is embedded by CLIP's text tower
as the mean of its prompts (:data:`TEMPLATES`, the CLIP paper's prompt ensembling; a name two nouns
share is told apart by its nearest hypernym, ``crane, a kind of wading bird``), once per model and
vocabulary, and kept on disk (:class:`TextEmbeddings`, :func:`text_cache_path`). An image's
probabilities (:class:`ZeroShotProbs`) are the softmax, at CLIP's logit scale, of the cosine
between its embedding (its image-tower features through CLIP's projection) and every noun's: the
same ``(N, C)`` class probabilities a classifier gives, lifted through the same WordNet hierarchy
(:func:`~scan_core.method.naming.suggest_names`). Zero-shot naming from an open vocabulary follows
CaSED (Conti et al., NeurIPS 2023) and "What's in a Name?" (arXiv 2304.02364).
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import RunConfig
from ..pretrained import OPEN_CLIP_MODELS, Pretrained, pretrained_spec
from .naming import VOCABULARY_FILE, Taxonomy

TEMPLATES = ("a photo of a {}.", "a drawing of a {}.")
CACHE_ENV = "SCAN_EXPLORER_CACHE"
#: Images per softmax over the vocabulary when probabilities are read.
BATCH = 4096


def zero_shot_backbone(config: RunConfig) -> Pretrained | None:
    """The CLIP backbone whose frozen features a run with ``config`` has, which names its clusters
    zero-shot, or None."""
    if config.backbone in OPEN_CLIP_MODELS and not config.pretext.epochs and config.uses_backbone:
        return pretrained_spec(config.backbone)
    return None


def prompt_labels(taxonomy: Taxonomy) -> list[str]:
    """The text each class is prompted as: its name, or, when another class has the same name,
    ``name, a kind of <its deepest hypernym>``."""
    names = [taxonomy.names[s] for s in taxonomy.classes]
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    labels = []
    for s, name in zip(taxonomy.classes, names, strict=True):
        if counts[name] > 1:
            parents = taxonomy.ancestors(s)
            parents = parents[parents != s]
            name = f"{name}, a kind of {taxonomy.names[parents[np.argmax(taxonomy.depth[parents])]]}"
        labels.append(name)
    return labels


def text_cache_path(model: str, cache_dir: Path | None = None) -> Path:
    """Where the text embeddings of the vocabulary for the CLIP ``model`` (a ``--backbone`` name)
    are kept: ``$SCAN_EXPLORER_CACHE`` (default ``~/.cache/scan_explorer``)
    ``/clip_text/<model>-<digest>.npz``, the digest of the vocabulary file and the templates."""
    root = cache_dir or Path(os.path.expanduser(os.environ.get(CACHE_ENV, "~/.cache/scan_explorer")))
    digest = hashlib.sha256(VOCABULARY_FILE.read_bytes() + "\n".join(TEMPLATES).encode()).hexdigest()[:16]
    return root / "clip_text" / f"{model}-{digest}.npz"


@dataclass(frozen=True)
class TextEmbeddings:
    """A CLIP model's side of zero-shot naming: ``vectors`` ``(C, D)`` unit rows (each class's
    prompts' mean), ``projection`` ``(F, D)`` from the image tower's pooled features into the joint
    space, and ``logit_scale`` (100 for OpenAI's CLIP)."""

    vectors: np.ndarray
    projection: np.ndarray
    logit_scale: float

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or self.projection.ndim != 2 or self.projection.shape[1] != self.vectors.shape[1]:
            raise ValueError(f"vectors (C, D) and projection (F, D) must share D, got {self.vectors.shape} "
                             f"and {self.projection.shape}")
        if not self.logit_scale > 0:
            raise ValueError(f"logit_scale must be positive, got {self.logit_scale}")

    @classmethod
    def from_prompts(cls, labels: list[str], encode: Callable[[list[str]], np.ndarray], projection: np.ndarray,
                     logit_scale: float) -> TextEmbeddings:
        """From the text tower ``encode`` (prompts -> ``(M, D)``): per label, the mean of its
        :data:`TEMPLATES` prompts' unit embeddings, made unit again."""
        prompts = [template.format(label) for label in labels for template in TEMPLATES]
        encoded = np.asarray(encode(prompts), np.float64)
        if encoded.shape[0] != len(prompts):
            raise ValueError(f"the text tower gave {encoded.shape[0]} rows for {len(prompts)} prompts")
        encoded /= np.linalg.norm(encoded, axis=1, keepdims=True)
        mean = encoded.reshape(len(labels), len(TEMPLATES), -1).mean(1)
        return cls((mean / np.linalg.norm(mean, axis=1, keepdims=True)).astype(np.float32),
                   np.asarray(projection, np.float32), float(logit_scale))

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial.npz")
        np.savez(partial, vectors=self.vectors, projection=self.projection, logit_scale=self.logit_scale)
        partial.replace(path)
        return path

    @classmethod
    def load(cls, path: Path, num_classes: int) -> TextEmbeddings | None:
        """The embeddings kept at ``path``, or None when there are none for ``num_classes`` classes."""
        try:
            with np.load(path, allow_pickle=False) as saved:
                text = cls(saved["vectors"], saved["projection"], float(saved["logit_scale"]))
        except (OSError, KeyError, ValueError):
            return None
        return text if len(text.vectors) == num_classes else None


class ZeroShotProbs:
    """The ``(N, C)`` zero-shot class probabilities of ``features`` ``(N, F)`` (the image tower's
    pooled features, any scale; memory-mapped is fine), computed as rows are read: the softmax over
    the classes of ``logit_scale`` times the cosine of ``features @ projection`` with each class's
    text vector. Reads like an array (``shape``, ``ndim``, ``len``, a slice of rows -> float32), so
    :func:`~scan_core.method.naming.class_mass` takes it as it takes a classifier's."""

    def __init__(self, features: np.ndarray, text: TextEmbeddings):
        if features.ndim != 2 or features.shape[1] != text.projection.shape[0]:
            raise ValueError(f"features must be (N, {text.projection.shape[0]}), got {features.shape}")
        self.features, self.text = features, text
        self.shape = (len(features), len(text.vectors))
        self.ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: slice) -> np.ndarray:
        if not isinstance(rows, slice):
            raise ValueError("zero-shot probabilities are read a slice of rows at a time")
        start, stop, step = rows.indices(self.shape[0])
        if step != 1:
            raise ValueError("zero-shot probabilities are read a run of rows at a time")
        out = np.empty((max(0, stop - start), self.shape[1]), np.float32)
        for at in range(start, stop, BATCH):
            embedded = np.asarray(self.features[at:min(at + BATCH, stop)], np.float32) @ self.text.projection
            embedded /= np.maximum(np.linalg.norm(embedded, axis=1, keepdims=True), 1e-12)
            logits = self.text.logit_scale * (embedded @ self.text.vectors.T)
            logits -= logits.max(1, keepdims=True)
            probs = np.exp(logits)
            out[at - start:at - start + len(probs)] = probs / probs.sum(1, keepdims=True)
        return out
