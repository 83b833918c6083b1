"""What cluster names come from (:mod:`scan_core.explore.names`) when a run lacks it: for a run on a
CLIP backbone, the zero-shot vocabulary's text embeddings (one pass of CLIP's text tower over the
WordNet nouns, kept once per machine, :mod:`scan_core.method.zero_shot`); for a run that did not
record its class scores when it embedded its images (runs from before they were recorded), one more
pass of its frozen backbone and its ImageNet classifier over the run's images, written to
``class_probs.npy`` ``(N, 1000)`` float16."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..config import RunConfig
from ..data.artifacts import load_torch, write_array
from ..data.images import ImageSet
from ..data.rundir import CLASS_PROBS
from ..data.weights import WeightsUnavailable
from ..method.backbones import NUM_IMAGENET_CLASSES, has_classifier, recording_class_probs
from ..method.class_view import classifying_backbone
from ..method.naming import wordnet_taxonomy
from ..method.precision import device_precision
from ..method.pretext import embed
from ..method.zero_shot import TextEmbeddings, prompt_labels, text_cache_path, zero_shot_backbone
from ..pretrained import OPEN_CLIP_MODELS, Pretrained, open_clip_needs, open_clip_weights
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
    backbone = classifying_backbone(encoder.parts[0]).eval()
    if not has_classifier(backbone):
        raise ValueError(f"{run_dir.name}: the {config.backbone} backbone keeps no ImageNet classifier")

    def fill(out: np.ndarray) -> None:
        with recording_class_probs(backbone, out):
            embed(backbone, images.images, torch_device, precision=device_precision("auto", torch_device))

    write_array(run_dir / CLASS_PROBS, (len(images), NUM_IMAGENET_CLASSES), np.float16, fill)
    return run_dir / CLASS_PROBS


#: Prompts per pass of the text tower.
TEXT_BATCH = 256


@torch.no_grad()
def record_clip_text(spec: Pretrained, device: str = "auto", cache_dir: Path | None = None) -> Path:
    """Embed the zero-shot vocabulary (:func:`~scan_core.method.naming.wordnet_taxonomy`) with the
    text tower of the CLIP backbone ``spec`` (open_clip) and keep it at
    :func:`~scan_core.method.zero_shot.text_cache_path`; returns that path. WeightsUnavailable when
    open_clip or the model's open_clip weights are not on this machine."""
    weights = open_clip_weights(spec)
    if weights is None:
        raise WeightsUnavailable(f"zero-shot names with {spec.name} need {open_clip_needs(spec)}")
    import open_clip
    torch_device = resolve_device(device)
    model = open_clip.create_model(OPEN_CLIP_MODELS[spec.name], pretrained=str(weights), device=torch_device).eval()
    tokenizer = open_clip.get_tokenizer(OPEN_CLIP_MODELS[spec.name])

    def encode(prompts: list[str]) -> np.ndarray:
        return np.concatenate([model.encode_text(tokenizer(prompts[at:at + TEXT_BATCH]).to(torch_device)).float().cpu().numpy()
                               for at in range(0, len(prompts), TEXT_BATCH)])

    text = TextEmbeddings.from_prompts(prompt_labels(wordnet_taxonomy()), encode,
                                       model.visual.proj.detach().float().cpu().numpy(), float(model.logit_scale.exp()))
    return text.save(text_cache_path(spec.name, cache_dir))


def record_names_inputs(run_dir: Path, device: str = "auto") -> Path:
    """What the run's names lack: the vocabulary's CLIP text embeddings for a run on a CLIP backbone
    (:func:`record_clip_text`), else its class scores (:func:`record_class_probs`); returns the file written."""
    clip = zero_shot_backbone(RunConfig.load(Path(run_dir)))
    return record_clip_text(clip, device) if clip is not None else record_class_probs(run_dir, device)
