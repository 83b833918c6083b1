"""The classifier's view of an image beside its features: what a frozen ImageNet backbone's own
classifier sees in it, lifted through WordNet.

Two representation spaces of the same images cluster better than either alone (TURTLE, Gadetsky et
al., ICML 2024, arXiv 2402.02356); WordNet nouns added to image features raise k-means on them (TAC,
Li et al., ICML 2024). Offline, the second space comes from the backbone itself: its 1,000 class
probabilities ``p`` ``(B, 1000)``, each summed into every WordNet synset at or above its class
(``p @ covers``, ``(B, S)``, :func:`~scan_core.method.naming.imagenet_taxonomy`), so that "tabby"
and "tiger cat" both count for "cat", and square-rooted (the Hellinger embedding: the inner product
of two of them is the Bhattacharyya coefficient of the two lifted distributions).

:class:`ClassView` wraps the backbone: ``(B, C, H, W) -> (B, D + S)``, its features and the lifted
scores, each L2-normalised, from one pass. Every later step of the run (feature banks, mined
neighbours, heads, the standard clusterings they compete with) sees both. Measured on the clip-art
sets: ``bench/RESULTS.md``, "The classifier's view beside the features".
"""
from __future__ import annotations

import typing

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .backbones import feature_dim, has_classifier
from .naming import imagenet_taxonomy


def lifted_classes(probs: torch.Tensor, covers: torch.Tensor) -> torch.Tensor:
    """``sqrt(probs @ covers)``: class probabilities ``(B, C)`` summed into the synsets ``(C, S)``
    covering each class, square-rooted ``(B, S)``."""
    if probs.shape[1] != covers.shape[0]:
        raise ValueError(f"{probs.shape[1]} class probabilities against a hierarchy of {covers.shape[0]} classes")
    return torch.sqrt((probs.float() @ covers).clamp_min(0))


class ClassView(nn.Module):
    """``backbone`` (one with an ImageNet classifier, :func:`~scan_core.method.backbones.has_classifier`)
    with its lifted class scores beside its features: ``(B, C, H, W) -> (B, feature_dim + S)``,
    each half L2-normalised."""

    covers: torch.Tensor

    def __init__(self, backbone: nn.Module):
        super().__init__()
        if not has_classifier(backbone):
            raise ValueError(f"the class view needs a backbone with an ImageNet classifier, not {type(backbone).__name__}")
        self.backbone = backbone
        covers = imagenet_taxonomy().covers
        self.register_buffer("covers", torch.from_numpy(np.asarray(covers.toarray(), np.float32)), persistent=False)
        self.feature_dim = feature_dim(backbone) + covers.shape[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)
        probs = torch.softmax(typing.cast(typing.Any, self.backbone).classify(features).float(), 1)
        return torch.cat([F.normalize(features.float(), dim=1),
                          F.normalize(lifted_classes(probs, self.covers), dim=1)], dim=1)


def classifying_backbone(part: nn.Module) -> nn.Module:
    """The backbone whose forward pass gives the features its classifier reads: ``part`` itself, or
    the one a :class:`ClassView` wraps."""
    return part.backbone if isinstance(part, ClassView) else part
