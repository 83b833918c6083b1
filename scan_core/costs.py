"""How long each stage takes on the 2-core CPU of the README's benchmarks, as data: the ETA shown
before and during a run (:mod:`scan_core.explore.jobs`), the progress of the untimed UMAP stages,
and the time budget the ``auto`` preset plans a run for (:mod:`scan_core.presets`). A running job
scales these by the speed it measures on the machine it runs on.
"""
from __future__ import annotations

from .config import RunConfig
from .pretrained import pretrained_spec

#: Each stage's (fixed seconds, seconds per image, seconds per image and epoch of its training).
#: The UMAP stages' fixed part is importing umap and numba compiling it in a fresh process; the
#: refine's per-image part is choosing how far the labels spread (label spreading, cross-validated).
#: Every stage of :data:`scan_core.data.rundir.STAGES` has an entry (a test checks).
STAGE_COSTS = {"images": (0.0, 5e-5, 0.0), "pretext": (0.0, 2e-4, 6e-4), "manifold": (12.0, 2e-3, 0.0),
               "neighbors": (0.0, 5e-4, 0.0), "suggest": (1.0, 1e-4, 0.0),
               "scan": (0.0, 0.0, 4.5e-5), "selflabel": (0.0, 0.0, 3e-5), "projection": (12.0, 8e-4, 0.0),
               "refine": (1.0, 4e-4, 3e-5)}
#: How much slower than the 16-wide small CNN on 28 px images a SimCLR epoch is, per backbone.
BACKBONE_COSTS = {"resnet18-cifar": 12.0, "resnet18-imagenet": 12.0, "resnet50-imagenet": 30.0,
                  "efficientnet-lite0-imagenet": 8.0}
#: Seconds per image of one pass of a frozen pretrained backbone at its own input size
#: (:data:`~scan_core.pretrained.PRETRAINED_BACKBONES`; ``python bench/bench_backbones.py``):
#: the pretext's pass and each feature bank's; the cost grows with the square of the side.
PRETRAINED_COSTS = {"dinov2-vitb14": 0.32, "dinov2-vits14": 0.12, "clip-vitb16": 0.26, "vit-b16-imagenet": 0.30,
                    "resnet50-imagenet": 0.10, "efficientnet-lite2-imagenet": 0.09,
                    "efficientnet-lite0-imagenet": 0.042, "resnet18-imagenet": 0.026}


def stage_cost(stage: str, num_images: int, epochs: float = 0.0) -> float:
    """Rough seconds of ``stage`` on ``num_images`` images and ``epochs`` of training."""
    fixed, per_image, per_image_epoch = STAGE_COSTS[stage]
    return fixed + num_images * (per_image + per_image_epoch * epochs)


def simclr_epoch_cost(backbone: str, width: int, side: int) -> float:
    """How many 16-wide-small-CNN-at-28-px epochs one SimCLR epoch of ``backbone`` on ``side`` px is."""
    return BACKBONE_COSTS.get(backbone, width / 16) * (side / 28) ** 2


def pretrained_pass_seconds(backbone: str, num_images: int, size: int) -> float:
    """Rough seconds of one pass of the frozen ``backbone`` over ``num_images`` images at ``size`` px."""
    own = pretrained_spec(backbone).input_size
    return PRETRAINED_COSTS[backbone] * (size / own) ** 2 * num_images


def stage_seconds(config: RunConfig, images: int, side: int, stages: list[str]) -> dict[str, float]:
    """Rough seconds of each of ``stages`` for a run with ``config`` on ``images`` images of
    ``side`` pixels (this machine's speed aside); ValueError for a stage the table lacks."""
    unknown = [stage for stage in stages if stage not in STAGE_COSTS]
    if unknown:
        raise ValueError(f"no cost for the stages {unknown}; known: {sorted(STAGE_COSTS)}")
    learns, asked = config.uses_backbone, config.pretext.epochs
    network = simclr_epoch_cost(config.backbone, config.backbone_width, side)
    epochs = {"pretext": asked * network if learns else 0, "scan": config.scan.epochs,
              "selflabel": config.selflabel.epochs, "refine": config.refine.epochs}
    seconds = {stage: stage_cost(stage, images, epochs.get(stage, 0)) for stage in stages}
    if config.time_budget and learns and asked and "pretext" in seconds:  # SimCLR cut to what the budget leaves
        fixed = stage_cost("pretext", images)
        epoch = (seconds["pretext"] - fixed) / asked
        left = config.time_budget - sum(value for stage, value in seconds.items() if stage != "pretext")
        seconds["pretext"] = fixed + epoch * fit_epochs(max(epoch, 1e-9), 1, left, asked)
    if learns and asked == 0 and "pretext" in seconds:  # a pretrained backbone as it is
        one_pass = pretrained_pass_seconds(config.backbone, images, config.pretrained_size)
        seconds["pretext"] += one_pass
        seconds["scan"] = seconds.get("scan", 0.0) + one_pass * config.feature_views  # its feature banks
    return seconds


def fit_epochs(seconds_per_step: float, steps_per_epoch: int, budget_seconds: float, asked: int) -> int:
    """The epochs, at most ``asked`` and at least 1, whose steps fit in ``budget_seconds``."""
    if seconds_per_step <= 0 or steps_per_epoch < 1 or asked < 1:
        raise ValueError(f"need seconds_per_step > 0, steps_per_epoch >= 1 and asked >= 1, got "
                         f"{seconds_per_step}, {steps_per_epoch}, {asked}")
    return max(1, min(asked, int(budget_seconds / (seconds_per_step * steps_per_epoch))))
