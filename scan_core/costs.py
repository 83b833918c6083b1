"""How long each stage takes, as data, per kind of device: the ETA shown before and during a run
(:mod:`scan_core.explore.jobs`), the progress of the untimed UMAP stages, and the time budget the
``auto`` preset plans a run for (:mod:`scan_core.presets`). The tables hold the reference device of
each kind; a run's :class:`~scan_core.config.Hardware` says which kind it runs on and how much faster
than that device it measured itself (a running job also scales the ETA by the speed it sees).
"""
from __future__ import annotations

from .config import REFERENCE_CPU, Hardware, RunConfig
from .pretrained import pretrained_spec

#: Each stage's (fixed seconds, seconds per image, seconds per image and epoch of its training) on
#: the 2-core CPU. The UMAP stages' fixed part is importing umap and numba compiling it in a fresh
#: process; the refine's per-image part is choosing how far the labels spread (label spreading,
#: cross-validated). Every stage of :data:`scan_core.data.rundir.STAGES` has an entry (a test checks).
STAGE_COSTS = {"images": (0.0, 5e-5, 0.0), "pretext": (0.0, 2e-4, 6e-4), "manifold": (12.0, 2e-3, 0.0),
               "neighbors": (0.0, 5e-4, 0.0), "suggest": (1.0, 1e-4, 0.0),
               "scan": (0.0, 0.0, 4.5e-5), "selflabel": (0.0, 0.0, 3e-5), "projection": (12.0, 8e-4, 0.0),
               "refine": (1.0, 4e-4, 3e-5)}
#: Seconds of each epoch of the cluster heads' training (scan, selflabel, refine) beyond its
#: per-image part: the checkpoint it saves, its batches' set-up. On a few hundred images an epoch is
#: mostly this (one step an epoch: the scan of 300 clip-art images went at about 0.3 s an epoch).
HEAD_EPOCH_SECONDS = 0.3
#: How much slower than the 16-wide small CNN on 28 px images a SimCLR epoch is, per backbone.
BACKBONE_COSTS = {"resnet18-cifar": 12.0, "resnet18-imagenet": 12.0, "resnet50-imagenet": 30.0,
                  "efficientnet-lite0-imagenet": 8.0}
#: How many times faster than on the 2-core CPU the training steps (SimCLR, the heads) run on the
#: reference device of each kind. CUDA: a CIFAR ResNet-18 step of SimCLR at 32 px (two views,
#: forward and backward: about two ResNet-18 inference passes at 224 px by their multiply-adds)
#: against the CPU's measured SimCLR cost; an estimate, as no GPU ran the benchmarks. A run
#: that trains SimCLR under a budget measures its steps and cuts its epochs to fit anyway.
TRAINING_SPEEDUP = {"cpu": 1.0, "cuda": 60.0}
#: The pass whose time a run measures on its device to compare it with the reference device
#: (:func:`scan_core.engine.device.measured_hardware`): ResNet-18 at 224 px, random weights.
REFERENCE_PASS = "resnet18-imagenet"
#: Seconds per image of one pass of a frozen pretrained backbone at its own input size, on the
#: reference device of each kind: the pretext's pass and each feature bank's; the cost grows with
#: the square of the side. CPU: ``python bench/bench_backbones.py`` on 2 cores. CUDA: timm's
#: published inference benchmark (``results/benchmark-infer-amp-nchw-pt291-cu128-4090.csv``: an
#: RTX 4090, mixed precision, batches of 1,024; a DINOv2 ViT at 224 px has 256 patches where timm's
#: ViT/16 has 196, so it costs 256/196 of that ViT's time).
PRETRAINED_COSTS = {
    "cpu": {"dinov2-vitb14": 0.32, "dinov2-vits14": 0.12, "clip-vitb16": 0.26, "vit-b16-imagenet": 0.30,
            "resnet50-imagenet": 0.10, "efficientnet-lite2-imagenet": 0.09,
            "efficientnet-lite0-imagenet": 0.042, "resnet18-imagenet": 0.026},
    "cuda": {"dinov2-vitb14": 4.4e-4, "dinov2-vits14": 1.6e-4, "clip-vitb16": 3.0e-4, "vit-b16-imagenet": 3.3e-4,
             "resnet50-imagenet": 2.3e-4, "efficientnet-lite2-imagenet": 1.8e-4,
             "efficientnet-lite0-imagenet": 9.8e-5, "resnet18-imagenet": 7.3e-5},
}


def stage_cost(stage: str, num_images: int, epochs: float = 0.0) -> float:
    """Rough seconds of ``stage`` on ``num_images`` images and ``epochs`` of training."""
    fixed, per_image, per_image_epoch = STAGE_COSTS[stage]
    return fixed + num_images * (per_image + per_image_epoch * epochs)


def simclr_epoch_cost(backbone: str, width: int, side: int) -> float:
    """How many 16-wide-small-CNN-at-28-px epochs one SimCLR epoch of ``backbone`` on ``side`` px is."""
    return BACKBONE_COSTS.get(backbone, width / 16) * (side / 28) ** 2


def simclr_epoch_seconds(backbone: str, width: int, side: int, num_images: int,
                         hardware: Hardware = REFERENCE_CPU) -> float:
    """Rough seconds of one SimCLR epoch of ``backbone`` over ``num_images`` images of ``side`` px on
    ``hardware``."""
    per_image_epoch = STAGE_COSTS["pretext"][2] * simclr_epoch_cost(backbone, width, side)
    return per_image_epoch * num_images / (TRAINING_SPEEDUP[hardware.kind] * hardware.speed)


def pretrained_pass_seconds(backbone: str, num_images: int, size: int, hardware: Hardware = REFERENCE_CPU) -> float:
    """Rough seconds of one pass of the frozen ``backbone`` over ``num_images`` images at ``size`` px
    on ``hardware``."""
    own = pretrained_spec(backbone).input_size
    return PRETRAINED_COSTS[hardware.kind][backbone] * (size / own) ** 2 * num_images / hardware.speed


def stage_seconds(config: RunConfig, images: int, side: int, stages: list[str]) -> dict[str, float]:
    """Rough seconds of each of ``stages`` for a run with ``config`` on ``images`` images of
    ``side`` pixels on the hardware it was planned for (this machine's speed aside); ValueError for
    a stage the table lacks. Only the training and the networks' passes run faster on a GPU."""
    unknown = [stage for stage in stages if stage not in STAGE_COSTS]
    if unknown:
        raise ValueError(f"no cost for the stages {unknown}; known: {sorted(STAGE_COSTS)}")
    hardware, learns, asked = config.hardware, config.uses_backbone, config.pretext.epochs
    faster = TRAINING_SPEEDUP[hardware.kind] * hardware.speed
    epochs = {"scan": config.scan.epochs, "selflabel": config.selflabel.epochs, "refine": config.refine.epochs}
    seconds = {stage: stage_cost(stage, images, epochs[stage] / faster if stage in epochs else 0)
               for stage in stages}
    for stage in set(epochs) & set(seconds):  # and each epoch's own cost, which no GPU speeds up
        seconds[stage] += epochs[stage] * HEAD_EPOCH_SECONDS
    if learns and asked and "pretext" in seconds:
        epoch = simclr_epoch_seconds(config.backbone, config.backbone_width, side, images, hardware)
        seconds["pretext"] += epoch * asked
        if config.time_budget:  # SimCLR cut to what the budget leaves
            left = config.time_budget - sum(value for stage, value in seconds.items() if stage != "pretext")
            seconds["pretext"] = stage_cost("pretext", images) + epoch * fit_epochs(max(epoch, 1e-9), 1, left, asked)
    if learns and asked == 0 and "pretext" in seconds:  # a pretrained backbone as it is
        seconds["pretext"] += pretrained_pass_seconds(config.backbone, images, config.pretrained_size, hardware)
        seconds["scan"] = seconds.get("scan", 0.0) + bank_seconds(config, images)
    return seconds


def bank_seconds(config: RunConfig, images: int) -> float:
    """Rough seconds of the feature banks (``feature_views`` passes of the frozen pretrained
    backbone) that the scan stage of a run with ``config`` embeds before its training; 0 when it
    has none."""
    if not (config.uses_backbone and config.pretext.epochs == 0 and config.feature_views):
        return 0.0
    one_pass = pretrained_pass_seconds(config.backbone, images, config.pretrained_size, config.hardware)
    return one_pass * config.feature_views


def share_done(config: RunConfig, images: int, stage: str, part: str | None) -> float:
    """The share of ``stage``'s rough seconds done once its ``part`` (a progress event's) ends: the
    scan's feature banks come before its training; every other part ends its stage (1)."""
    if (stage, part) != ("scan", "feature banks"):
        return 1.0
    banks = bank_seconds(config, images)
    training = stage_seconds(config, images, 0, ["scan"])["scan"]  # without the pretext, no banks: training alone
    return banks / max(banks + training, 1e-9)


def fit_epochs(seconds_per_step: float, steps_per_epoch: int, budget_seconds: float, asked: int) -> int:
    """The epochs, at most ``asked`` and at least 1, whose steps fit in ``budget_seconds``."""
    if seconds_per_step <= 0 or steps_per_epoch < 1 or asked < 1:
        raise ValueError(f"need seconds_per_step > 0, steps_per_epoch >= 1 and asked >= 1, got "
                         f"{seconds_per_step}, {steps_per_epoch}, {asked}")
    return max(1, min(asked, int(budget_seconds / (seconds_per_step * steps_per_epoch))))
