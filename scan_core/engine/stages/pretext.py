"""The pretext stage: the encoder (SimCLR backbone and/or whitened pixel PCA,
:mod:`scan_core.method.pretext`) trained, the features ``(N, D)`` of every clean image, and
k-means on them as the pretext's score."""
from __future__ import annotations

import torch

from ...data.artifacts import CorruptArtifact, load_array, load_torch, save_array, save_torch
from ...method.cosine import spherical_kmeans
from ...method.pretext import SimCLRModel, embed, train_simclr
from ..context import RunContext
from ..models import build_encoder


def run(ctx: RunContext) -> None:
    c = ctx.config
    encoder = build_encoder(c, ctx.images, ctx.device, fit=True)
    if c.head_input != "pixels":
        model = SimCLRModel(encoder.parts[0]).to(ctx.device, memory_format=torch.channels_last)
        train_simclr(model, ctx.images.images, c.pretext, c.augment, ctx.device, ctx.progress.step,
                     seed=c.seed, checkpoint=ctx.checkpoint("pretext"))
    ctx.encoder = encoder.eval()
    ctx.features = embed(encoder, ctx.images.images, ctx.device)
    save_torch(ctx.dir / "pretext.pt", encoder.state_dict())
    save_array(ctx.dir / "features.npy", ctx.features)
    clusters = spherical_kmeans(ctx.features, c.num_clusters, c.seed)
    ctx.record("pretext", {**ctx.scores(clusters), "method": "k-means on pretext features"})


def load(ctx: RunContext) -> None:
    ctx.features = load_array(ctx.dir / "features.npy")
    ctx.encoder = build_encoder(ctx.config, ctx.images, ctx.device)
    ctx.encoder.load_state_dict(load_torch(ctx.dir / "pretext.pt", ctx.device))
    ctx.encoder.eval()
    if len(ctx.features) != len(ctx.images):
        raise CorruptArtifact("features.npy does not match the images")
