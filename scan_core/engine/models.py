"""The networks a run builds, saves and loads back: the encoder its config asks for, the cluster
model of a cluster stage (heads on frozen feature banks, or encoder + heads end to end) and the head
that stage kept. Shared by the cluster stages and by :mod:`scan_core.engine.inference`."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..config import RunConfig
from ..data.artifacts import CorruptArtifact, load_array, load_torch, save_array, save_torch, write_array
from ..data.images import ImageSet
from ..method.augment import strong_view, to_tensor
from ..method.backbones import build_backbone
from ..method.class_view import ClassView
from ..method.clustering import ClusterHeads, ConsensusHeads
from ..method.hog import HOGPCA
from ..method.manifold import extend_manifold
from ..method.pretext import Encoder, PixelPCA, embed
from .context import RunContext

Inputs = Callable[[np.ndarray], torch.Tensor]   # image indices (B,) -> model inputs of those images


def build_encoder(config: RunConfig, images: ImageSet, device: torch.device, fit: bool = False) -> Encoder:
    """The encoder of ``config.head_input`` for the run's ``images``: a fresh backbone (with its
    :class:`~scan_core.method.class_view.ClassView` when ``config.class_view``) and/or a pixel PCA,
    or a HOG PCA (fitted on ``images`` if ``fit``, else shaped to load a saved state into)."""
    parts: list[torch.nn.Module] = []
    if config.uses_backbone:
        backbone = build_backbone(config.backbone, images.channels, config.backbone_width, config.pretrained_size)
        parts.append(ClassView(backbone) if config.class_view else backbone)
    if config.head_input in ("pixels", "both"):
        parts.append(PixelPCA.fit(images.images, config.pixel_pca_dim, config.seed, device) if fit else
                     PixelPCA.empty(images.images, config.pixel_pca_dim))
    if config.head_input == "hog":
        parts.append(HOGPCA.fit(images.images, config.hog_dim, config.seed, device) if fit else
                     HOGPCA.empty(images.images, config.hog_dim))
    return Encoder(parts).to(device)


def kept_head(saved: dict, feature_dim: int, config: RunConfig) -> ClusterHeads | ConsensusHeads:
    """The head a cluster stage kept (``saved``: its ``scan.pt`` / ``selflabel.pt`` / ``refine.pt``), as a
    one-head model ``(B, feature_dim) -> (1, B, K)``: the consensus of all its heads when it saved one
    (``consensus``), else the ``best_head`` alone (runs from before the consensus). ``K``: the
    clusters it saved (``num_clusters``: a refine may have grown them), else the config's."""
    num_heads = len({key.split(".")[1] for key in saved["heads"] if key.startswith("heads.")})
    k = saved_clusters(saved, config)
    heads = ClusterHeads(feature_dim, k, num_heads, config.scan.hidden)
    heads.load_state_dict(saved["heads"])
    if "consensus" in saved:
        return ConsensusHeads(heads, saved["consensus"])
    single = ClusterHeads(feature_dim, k, 1, config.scan.hidden)
    single.heads[0].load_state_dict(heads.heads[int(saved["best_head"])].state_dict())
    return single


def saved_clusters(saved: dict, config: RunConfig) -> int:
    """The number of clusters of a saved cluster stage: what it recorded, else (saved before a refine
    could grow them) the config's K."""
    return int(saved["num_clusters"]) if "num_clusters" in saved else config.num_clusters


def on_inputs(ctx: RunContext, heads: torch.nn.Module) -> torch.nn.Module:
    """``heads`` as the model of the run's scan mode: alone on frozen features, or after the
    encoder on images when the scan mode fine-tunes it."""
    if ctx.config.scan_mode == "finetune":
        return torch.nn.Sequential(ctx.encoder, heads).to(ctx.device)
    return heads.to(ctx.device)


def cluster_model(ctx: RunContext, heads: torch.nn.Module, noise: float = 0.0) -> tuple[torch.nn.Module, Inputs, Inputs]:
    """``(model, augmented_inputs, clean_inputs)`` for the run's scan mode: ``heads`` on frozen
    feature banks, or encoder + ``heads`` on strongly augmented images. A run without feature banks
    augments its frozen features with Gaussian noise of ``noise`` per-dimension standard deviations
    (0: the clean features). Both input functions return the images in the order of the index they
    are given, read from the run's memory-mapped arrays a batch at a time (:func:`rows_of`)."""
    c = ctx.config
    model = on_inputs(ctx, heads)
    if c.scan_mode == "finetune":
        images = ctx.images.images
        return (model, lambda index: strong_view(to_tensor(images[index], ctx.device), c.augment),
                lambda index: to_tensor(images[index], ctx.device))
    clean = rows_of(ctx.head_features, ctx.device)
    banks = feature_banks(ctx)
    bank_rows = rows_of(banks, ctx.device) if banks is not None else None
    rng = np.random.default_rng(c.seed)
    scale = torch.as_tensor(noise * column_std(ctx.head_features), device=ctx.device) if noise else None
    noise_source = torch.Generator(device=ctx.device).manual_seed(c.seed)

    def augmented(index: np.ndarray) -> torch.Tensor:
        if bank_rows is not None:
            return bank_rows((rng.integers(0, len(banks), len(index)), index))
        if scale is not None:
            return clean(index) + scale * torch.randn(len(index), len(scale), generator=noise_source, device=ctx.device)
        return clean(index)

    return model, augmented, clean


def rows_of(array: np.ndarray, device: torch.device) -> Callable[..., torch.Tensor]:
    """``key -> float32 tensor on device`` of ``array[key]`` (an index ``(B,)``, or a tuple of them):
    read from the array (memory-mapped: only those rows) on the CPU; on a GPU the array is copied
    there once, in its own dtype."""
    if device.type == "cpu":
        return lambda key: torch.from_numpy(np.asarray(array[key], dtype=np.float32))
    whole = torch.as_tensor(np.asarray(array), device=device)
    return lambda key: whole[key].float()


def column_std(array: np.ndarray, batch_size: int = 65536) -> np.ndarray:
    """The standard deviation ``(D,)`` of each column of ``array`` ``(N, D)`` (``N - 1`` degrees of
    freedom, as torch's ``std``), read ``batch_size`` rows at a time in float64."""
    n = len(array)
    if n < 2:
        raise ValueError(f"a standard deviation needs at least 2 rows, got {n}")
    total = np.zeros(array.shape[1])
    squares = np.zeros(array.shape[1])
    for start in range(0, n, batch_size):
        rows = np.asarray(array[start:start + batch_size], dtype=np.float64)
        total += rows.sum(0)
        squares += np.square(rows).sum(0)
    return np.sqrt(np.maximum(squares - total ** 2 / n, 0) / (n - 1)).astype(np.float32)


def feature_banks(ctx: RunContext) -> np.ndarray | None:
    """Frozen-encoder features of ``feature_views`` strong views ``(V, N, D)`` (placed on the run's
    manifold when it has one), cached in ``feature_banks.npy`` and memory-mapped; float16 when they
    would take more than ``float16_above`` bytes in float32; None when the config asks for none.
    Each view is written as it is embedded (a manifold's view is placed whole, then written)."""
    c = ctx.config
    if not c.feature_views:
        return None
    path = ctx.dir / "feature_banks.npy"
    shape = (c.feature_views, *ctx.head_features.shape)
    try:
        banks = load_array(path, mmap=True)
        if banks.shape == shape:
            return banks
    except (FileNotFoundError, CorruptArtifact):
        pass
    n = len(ctx.images)

    def bank(view: int, out: np.ndarray | None = None) -> np.ndarray:
        return embed(ctx.encoder, ctx.images.images, ctx.device, view=lambda x: strong_view(x, c.augment),
                     on_batch=lambda done, _: ctx.progress.step(view * n + done, c.feature_views * n, unit="image",
                                                                part="feature banks"), precision=ctx.precision, out=out)

    def fill(banks: np.ndarray) -> None:
        for view in range(c.feature_views):
            if ctx.manifold is None:
                bank(view, banks[view])
            else:
                banks[view] = extend_manifold(ctx.features, ctx.manifold, bank(view), exact_limit=c.exact_search_limit)

    dtype = np.float16 if 4 * np.prod(shape, dtype=np.int64) > c.float16_above else np.float32
    return write_array(path, shape, dtype, fill)


def save_cluster_stage(ctx: RunContext, stage: str, heads: torch.nn.Module, probs: np.ndarray,
                       best_head: int = 0) -> None:
    """Write ``<stage>.pt`` (the weights of ``heads``, a :class:`ClusterHeads` or a
    :class:`ConsensusHeads` with its ``consensus`` order, the kept head's number, the number of
    clusters ``K``, and the encoder when the run's scan mode fine-tunes it) and ``<stage>_probs.npy`` ``(N, K)``."""
    saved: dict[str, object] = {"best_head": torch.tensor(best_head), "num_clusters": torch.tensor(probs.shape[1])}
    if isinstance(heads, ConsensusHeads):
        saved |= {"heads": heads.members.state_dict(), "consensus": heads.order.cpu()}
    else:
        saved["heads"] = heads.state_dict()
    if ctx.config.scan_mode == "finetune":
        saved["encoder"] = ctx.encoder.state_dict()
    save_torch(ctx.dir / f"{stage}.pt", saved)
    save_array(ctx.dir / f"{stage}_probs.npy", probs)


def load_cluster_stage(ctx: RunContext, stage: str) -> None:
    """Check ``<stage>.pt`` reads back (later stages and the app need it) and load the stage's
    probabilities ``(N, K)`` into ``ctx.probs``; CorruptArtifact when either is damaged."""
    saved = load_torch(ctx.dir / f"{stage}.pt")
    ctx.probs = load_array(ctx.dir / f"{stage}_probs.npy")
    if ctx.probs.shape != (len(ctx.images), saved_clusters(saved, ctx.config)):
        raise CorruptArtifact(f"{stage}_probs.npy has the wrong shape")
