"""The pretext stage: the encoder (SimCLR backbone and/or whitened pixel PCA,
:mod:`scan_core.method.pretext`, or whitened HOG PCA, :mod:`scan_core.method.hog`) trained or
fitted — or, with ``pretext.epochs`` 0, a pretrained backbone used as it is — the features
``(N, D)`` of every clean image, and k-means on them as the pretext's score (once K is known)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from ...costs import fit_epochs, stage_seconds
from ...data.artifacts import CorruptArtifact, load_array, load_json, load_torch, save_json, save_torch, write_array
from ...data.rundir import CLASS_PROBS, planned_stages
from ...method.backbones import NUM_IMAGENET_CLASSES, has_classifier, recording_class_probs
from ...method.class_view import classifying_backbone
from ...method.cosine import spherical_kmeans
from ...method.distributed import broadcast_state, is_main, world
from ...method.pretext import EMBED_BATCH, SimCLRModel, embed, train_simclr
from .. import ranks
from ..context import RunContext
from ..models import build_encoder

PLAN = "pretext_plan.json"   # the epochs a time budget allowed, kept for a resumed run


def run(ctx: RunContext) -> None:
    c = ctx.config
    encoder = broadcast_state(build_encoder(c, ctx.images, ctx.device, fit=is_main()))  # one fit, every rank
    plan = None
    if c.uses_backbone and c.pretext.epochs:
        model = SimCLRModel(encoder.parts[0]).to(ctx.device).to(memory_format=torch.channels_last)
        planned = budget_plan(ctx)
        pretext = replace(c.pretext, epochs=planned["epochs"]) if planned else c.pretext
        train_simclr(model, ctx.images.images, pretext, c.augment, ctx.device, ctx.progress.step,
                     seed=c.seed, checkpoint=ctx.checkpoint("pretext"),
                     plan=None if planned or not c.time_budget else lambda s, n: ranks.share(plan_epochs(ctx, s, n)),
                     precision=ctx.precision)
        plan = planned or _read_plan(ctx)
    ctx.encoder = encoder.eval()
    frozen = c.uses_backbone and not c.pretext.epochs  # a pretrained network: its pass is the stage
    fill = lambda out: embed(encoder, ctx.images.images, ctx.device, batch_size=EMBED_BATCH if frozen else 1024,
                             precision=ctx.precision, out=out,
                             on_batch=(lambda done, total: ctx.progress.step(done, total, unit="image")) if frozen else None)
    backbone = classifying_backbone(encoder.parts[0])
    if frozen and has_classifier(backbone) and world()[1] == 1:  # its class scores from the same pass, for names
        embed_only = fill

        def fill(out: np.ndarray) -> None:
            def both(probs: np.ndarray) -> None:
                with recording_class_probs(backbone, probs):
                    embed_only(out)
            write_array(ctx.dir / CLASS_PROBS, (len(ctx.images), NUM_IMAGENET_CLASSES), np.float16, both)
    ctx.features = write_array(ctx.dir / "features.npy", (len(ctx.images), encoder.feature_dim), np.float32, fill)
    save_torch(ctx.dir / "pretext.pt", encoder.state_dict())
    method = "k-means on pretext features" if c.pretext.epochs else f"k-means on frozen {c.backbone} features"
    ctx.record("pretext", {**(score(ctx) if c.num_clusters else {}), "method": method, **({"budget": plan} if plan else {})})


def score(ctx: RunContext) -> dict:
    """The scores of K-means on the features (the suggest stage asks when K was not known yet)."""
    return ctx.scores(spherical_kmeans(ctx.features, ctx.config.num_clusters, ctx.config.seed))


def plan_epochs(ctx: RunContext, seconds_per_step: float, steps_per_epoch: int) -> int:
    """SimCLR's epochs within the run's time budget: what is left of it after the other stages'
    rough costs (:mod:`scan_core.costs`), at the step time measured; saved for a resume."""
    c = ctx.config
    others = sum(seconds for stage, seconds in stage_seconds(
        c, len(ctx.images), ctx.images.images.shape[1], [s.name for s in planned_stages(c.to_dict())]).items()
        if stage != "pretext")
    left = max(0.0, c.time_budget - others)
    epochs = fit_epochs(seconds_per_step, steps_per_epoch, left, c.pretext.epochs)
    save_json(ctx.dir / PLAN, {"epochs": epochs, "asked": c.pretext.epochs, "seconds_per_step": round(seconds_per_step, 4),
                              "seconds_left": round(left, 1), "time_budget": c.time_budget})
    return epochs


def budget_plan(ctx: RunContext) -> dict | None:
    """The plan a budgeted run made before it was stopped (None: none yet; a resume plans afresh
    only when no epoch was saved, and then the checkpoint has none either)."""
    return _read_plan(ctx) if (ctx.dir / "checkpoints" / "pretext.pt").exists() else None


def _read_plan(ctx: RunContext) -> dict | None:
    try:
        return load_json(ctx.dir / PLAN)
    except (FileNotFoundError, CorruptArtifact):
        return None


def load(ctx: RunContext) -> None:
    ctx.features = load_array(ctx.dir / "features.npy", mmap=True)
    ctx.encoder = build_encoder(ctx.config, ctx.images, ctx.device)
    ctx.encoder.load_state_dict(load_torch(ctx.dir / "pretext.pt", ctx.device))
    ctx.encoder.eval()
    if len(ctx.features) != len(ctx.images):
        raise CorruptArtifact("features.npy does not match the images")
