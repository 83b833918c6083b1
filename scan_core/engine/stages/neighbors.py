"""The neighbors stage: every image's ``num_neighbors`` nearest images ``(N, k)`` in the space the
config names (:mod:`scan_core.method.neighbors`): the pretext features, the pixels' PCA, both fused
by rank, HOG (:mod:`scan_core.method.hog`) or the run's UMAP manifold (:mod:`scan_core.method.manifold`).
When that space is not the pretext features, their own nearest images are kept too
(``feature_neighbors.npy``): a second neighbourhood for the review queue (:mod:`scan_core.explore.review`)."""
from __future__ import annotations

import numpy as np

from ...data.artifacts import CorruptArtifact, load_array, save_array, scratch_array, write_array
from ...method.hog import HOGPCA
from ...method.neighbors import fuse_neighbors, mine_neighbors, neighbor_purity, search_kind, search_recall
from ...method.pretext import PixelPCA, embed
from ...method.whitening import WhitenedPCA
from ..context import RunContext


def run(ctx: RunContext) -> None:
    c = ctx.config
    n, k = len(ctx.images), c.num_neighbors
    spaces = []
    if c.neighbor_space in ("features", "fused"):
        spaces.append(ctx.features)
    if c.neighbor_space in ("pixels", "fused"):
        spaces.append(components(ctx, PixelPCA, c.pixel_pca_dim))
    if c.neighbor_space == "manifold":
        spaces.append(ctx.manifold)
    if c.neighbor_space == "hog":
        spaces.append(components(ctx, HOGPCA, c.hog_dim))

    def mined(space: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        return mine_neighbors(space, k, exact_limit=c.exact_search_limit, out=out, memory=c.index_memory, scratch=ctx.dir)

    if len(spaces) == 1:
        lists = [write_array(ctx.dir / "neighbors.npy", (n, k), np.int64, lambda out: mined(spaces[0], out))]
        ctx.neighbors = lists[0]
    else:
        lists = [mined(space) for space in spaces]
        ctx.neighbors = fuse_neighbors(lists, k)
        save_array(ctx.dir / "neighbors.npy", ctx.neighbors)
    if c.neighbor_space == "fused":  # the features were mined first: their list is lists[0]
        save_array(ctx.dir / "feature_neighbors.npy", lists[0])
    elif c.neighbor_space != "features":
        write_array(ctx.dir / "feature_neighbors.npy", (n, k), np.int64, lambda out: mined(ctx.features, out))
    values: dict[str, object] = {
        "space": c.neighbor_space, "k": c.num_neighbors,
        "search": "+".join(sorted({search_kind(n, c.exact_search_limit, dim=space.shape[1], memory=c.index_memory)
                                   for space in spaces})),
        # recall@k of each mined space against exact search on sampled queries (1.0 when exact, up to ties)
        "recall": min(search_recall(space, found, seed=c.seed) for space, found in zip(spaces, lists))}
    if ctx.images.has_labels:
        values["purity"] = neighbor_purity(ctx.neighbors, ctx.images.labels)
    ctx.record("neighbors", values)


def load(ctx: RunContext) -> None:
    ctx.neighbors = load_array(ctx.dir / "neighbors.npy", mmap=True)
    if ctx.neighbors.shape != (len(ctx.images), ctx.config.num_neighbors):
        raise CorruptArtifact("neighbors.npy has the wrong shape")


def components(ctx: RunContext, kind: type[WhitenedPCA], dim: int) -> np.ndarray:
    """Un-whitened principal components ``(N, dim)`` of ``kind``'s description of the images: the
    pixel space (:class:`PixelPCA`) or the HOG space (:class:`HOGPCA`); the encoder's own PCA of that
    kind when it has one, else one fitted here."""
    pca = next((p for p in ctx.encoder.parts if isinstance(p, kind)), None)
    if pca is None:
        pca = kind.fit(ctx.images.images, dim, ctx.config.seed, ctx.device)
    out = scratch_array(ctx.dir, (len(ctx.images), pca.feature_dim), np.float32)  # dropped once mined
    return embed(pca.project, ctx.images.images, ctx.device, batch_size=1024, out=out)
