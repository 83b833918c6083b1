"""Whitened PCA of a fixed description of the images, as a module: a label-free feature space that
needs no training. :class:`~scan_core.method.pretext.PixelPCA` describes the images by their pixels,
:class:`~scan_core.method.hog.HOGPCA` by their HOG."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..data.shards import Rows
from .augment import to_tensor


class WhitenedPCA(nn.Module):
    """``(B, C, H, W)`` in [0, 1] -> ``(B, dim)``: the principal components of :meth:`describe`'s
    ``(B, F)`` description, each scaled to unit variance; fitted by randomised SVD on at most
    :data:`FIT_IMAGES` images. Subclasses define :meth:`describe`."""

    FIT_IMAGES = 20_000
    mean: torch.Tensor
    components: torch.Tensor
    scale: torch.Tensor

    def __init__(self, num_inputs: int, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(num_inputs))
        self.register_buffer("components", torch.zeros(dim, num_inputs))
        self.register_buffer("scale", torch.ones(dim))
        self.feature_dim = dim

    @staticmethod
    def describe(x: torch.Tensor) -> torch.Tensor:
        """The description the PCA is taken of, ``(B, C, H, W) -> (B, F)``."""
        raise NotImplementedError

    @classmethod
    def empty(cls, images: Rows, dim: int) -> WhitenedPCA:
        """An unfitted module shaped for uint8 ``images`` ``(N, H, W, C)``, to load a saved state into:
        at most ``dim`` components, the description's length and the fitted images less one."""
        if len(images) < 2:
            raise ValueError(f"need at least 2 images for a PCA, got {len(images)}")
        size = cls.describe(to_tensor(np.asarray(images[:1]), "cpu")).shape[1]
        return cls(size, min(dim, size, min(len(images), cls.FIT_IMAGES) - 1))

    @classmethod
    def fit(cls, images: Rows, dim: int, seed: int = 0, device: str | torch.device = "cpu",
            batch_size: int = 4096) -> WhitenedPCA:
        """Fit on uint8 ``images`` ``(N, H, W, C)`` (a random :data:`FIT_IMAGES` of them at most)."""
        from sklearn.decomposition import PCA
        module = cls.empty(images, dim)
        sample = np.sort(np.random.default_rng(seed).permutation(len(images))[:cls.FIT_IMAGES])
        with torch.no_grad():
            described = np.concatenate([cls.describe(to_tensor(images[sample[start:start + batch_size]], device)).cpu().numpy()
                                        for start in range(0, len(sample), batch_size)])
        pca = PCA(module.feature_dim, svd_solver="randomized", random_state=seed).fit(described)
        module.mean.copy_(torch.as_tensor(pca.mean_))
        module.components.copy_(torch.as_tensor(pca.components_))
        module.scale.copy_(torch.as_tensor(1 / np.sqrt(pca.explained_variance_ + 1e-8)))
        return module.to(device)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Un-whitened principal components ``(B, dim)``."""
        return (self.describe(x) - self.mean) @ self.components.T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(x) * self.scale
