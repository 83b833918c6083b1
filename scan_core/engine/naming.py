"""The class scores that cluster names come from (:mod:`scan_core.explore.names`), for a run that
did not record them when it embedded its images (runs from before they were recorded): one more pass
of its frozen backbone and its ImageNet classifier over the run's images, written to
``class_probs.npy`` ``(N, 1000)`` float16."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..config import RunConfig
from ..data.artifacts import load_torch, write_array
from ..data.images import ImageSet
from ..data.rundir import CLASS_PROBS
from ..method.backbones import NUM_IMAGENET_CLASSES, has_classifier, recording_class_probs
from ..method.precision import device_precision
from ..method.pretext import embed
from .device import resolve_device
from .models import build_encoder


@torch.no_grad()
def record_class_probs(run_dir: Path, device: str = "auto") -> Path:
    """Write ``RUN/class_probs.npy`` from the run's frozen backbone; returns its path. ValueError
    when the run's features do not come from a frozen backbone with a classifier."""
    run_dir = Path(run_dir)
    config = RunConfig.load(run_dir)
    if not config.uses_backbone or config.pretext.epochs:
        raise ValueError(f"{run_dir.name}: its features come from {'SimCLR' if config.uses_backbone else config.head_input}, "
                         "not a frozen pretrained backbone with a classifier")
    images = ImageSet.load(run_dir / "images")
    torch_device = resolve_device(device)
    encoder = build_encoder(config, images, torch_device)
    encoder.load_state_dict(load_torch(run_dir / "pretext.pt", torch_device))
    backbone = encoder.parts[0].eval()
    if not has_classifier(backbone):
        raise ValueError(f"{run_dir.name}: the {config.backbone} backbone keeps no ImageNet classifier")

    def fill(out: np.ndarray) -> None:
        with recording_class_probs(backbone, out):
            embed(backbone, images.images, torch_device, precision=device_precision("auto", torch_device))

    write_array(run_dir / CLASS_PROBS, (len(images), NUM_IMAGENET_CLASSES), np.float16, fill)
    return run_dir / CLASS_PROBS
