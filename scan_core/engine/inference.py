"""Apply a finished run to images it did not train on.

SCAN's published protocol (Van Gansbeke et al., ECCV 2020, section 3.1) trains on a dataset's
train split and scores on its test split; for Fashion-MNIST that is 60k -> 10k. The same step
sorts a user's new images into a run's clusters. The run's encoder embeds the images,
``(N, H, W, C)`` uint8 -> features ``(N, D)``, and each cluster stage's kept head assigns them,
-> probabilities ``(N, K)``. Nothing is trained and nothing in the run directory is written.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..config import RunConfig
from ..data.artifacts import load_array, load_torch
from ..data.images import ImageSet
from ..data.rundir import CLUSTER_STAGES, read_status
from ..data.sources import load_source
from ..method.manifold import extend_manifold
from ..method.metrics import evaluate
from ..method.precision import device_precision
from ..method.pretext import embed
from .device import resolve_device
from .models import build_encoder, kept_head


@dataclass
class Applied:
    """A run applied to images: pretext ``features`` ``(N, D)`` and, per finished cluster stage,
    ``probs[stage]`` ``(N, K)`` float32."""

    features: np.ndarray
    probs: dict[str, np.ndarray]


def _run_config(run_dir: Path) -> RunConfig:
    try:
        return RunConfig.load(run_dir)
    except FileNotFoundError as error:
        raise ValueError(f"{run_dir} is not a run directory: config.json is missing or unreadable") from error


@torch.no_grad()
def apply_run(run_dir: Path, images: ImageSet, device: str = "auto") -> Applied:
    """Embed ``images`` with the run's encoder and assign them with every finished cluster stage.

    ``images`` must have the size and channels of the run's own images (load them with
    ``image_size=`` the run's side). ValueError when the run has no finished SCAN stage or the
    images do not fit it.
    """
    run_dir = Path(run_dir)
    config = _run_config(run_dir)
    stages = [s for s in CLUSTER_STAGES if s in read_status(run_dir).completed]
    if "scan" not in stages:
        raise ValueError(f"{run_dir}: the run has not finished its scan stage yet; nothing to apply")
    own = ImageSet.load(run_dir / "images")
    if images.image_size != own.image_size or images.channels != own.channels:
        raise ValueError(f"{images.name}: images are {images.image_size[0]}x{images.image_size[1]}x"
                         f"{images.channels} but the run in {run_dir} works on {own.image_size[0]}x"
                         f"{own.image_size[1]}x{own.channels}; load them with image_size={own.image_size[0]}")
    torch_device = resolve_device(device)
    encoder = build_encoder(config, own, torch_device)  # shaped by the run's images, as trained
    pretext_state = load_torch(run_dir / "pretext.pt", torch_device)
    encoder.load_state_dict(pretext_state)
    precision = device_precision(config.precision, torch_device)
    features = embed(encoder, images.images, torch_device, precision=precision)
    head_input = features
    if config.manifold_dims:
        head_input = extend_manifold(load_array(run_dir / "features.npy"), load_array(run_dir / "manifold.npy"), features,
                                     exact_limit=config.exact_search_limit)
    probs = {}
    for stage in stages:
        saved = load_torch(run_dir / f"{stage}.pt", torch_device)
        encoder.load_state_dict(saved.get("encoder", pretext_state))  # fine-tuned encoder, if any
        stage_features = (head_input if "encoder" not in saved else
                          embed(encoder, images.images, torch_device, precision=precision))
        head = kept_head(saved, stage_features.shape[1], config).to(torch_device).eval()
        logits = head(torch.as_tensor(stage_features, device=torch_device))[0]
        probs[stage] = F.softmax(logits, dim=1).cpu().numpy().astype(np.float32)
    return Applied(features=features, probs=probs)


def evaluate_on(run_dir: Path, spec: str, device: str = "auto") -> dict[str, dict]:
    """ACC / NMI / ARI of every finished cluster stage of the run on the labelled images ``spec``
    (e.g. ``fashion-mnist:test``), keyed by stage."""
    run_dir = Path(run_dir)
    _run_config(run_dir)  # a clear error before loading any images
    images = load_source(spec, image_size=ImageSet.load(run_dir / "images").image_size[0])
    if not images.has_labels:
        raise ValueError(f"{spec}: no labels found, so the run cannot be scored on it")
    applied = apply_run(run_dir, images, device)
    return {stage: evaluate(probs.argmax(1), images.labels) for stage, probs in applied.probs.items()}
