"""Feature extractors: a small CNN for small images, a CIFAR-style ResNet-18, and the frozen
pretrained encoders of :data:`~scan_core.pretrained.PRETRAINED_BACKBONES` (the registry ``auto`` picks from for colour
images, strongest first): DINOv2 (Oquab et al., 2023) and CLIP (Radford et al., ICML 2021) ViTs
through ``timm``, torchvision's ImageNet ViT-B/16 and ResNets, and EfficientNet-Lite0/2 (Tan & Le,
ICML 2019), whose ImageNet weights come as pip packages (Lite0's with the pinned requirements), so
a pretrained backbone works offline.

Every backbone maps float images ``(B, C, H, W)`` in [0, 1] to features ``(B, D)`` and exposes
``feature_dim``. Pretrained backbones resize their input to ``input_size`` pixels first (they see
little in a 32 px image), take grayscale as three equal channels and normalise as they were
trained. Weights are looked for in ``$SCAN_EXPLORER_WEIGHTS`` first, then in the library's own
cache (torch hub, the Hugging Face hub), downloaded (:func:`scan_core.data.weights.fetch`, not when
offline) only when a backbone is asked for by name, and only ever read as tensors
(``weights_only=True``, safetensors).
"""
from __future__ import annotations

import os
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from ..config import BACKBONES
from ..data.weights import WeightsUnavailable, fetch
from ..pretrained import (
    PRETRAINED_BACKBONES,
    TORCHVISION_FILES,
    WEIGHTS_ENV,
    Pretrained,
    local_weights,
    pretrained_spec,
    torch_hub_dir,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NUM_IMAGENET_CLASSES = 1000


def feature_dim(module: nn.Module) -> int:
    """The length of the features the backbone ``module`` gives (its ``feature_dim``)."""
    dim = getattr(module, "feature_dim", None)
    if not isinstance(dim, int):
        raise ValueError(f"{type(module).__name__} has no feature_dim")
    return dim


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    """Four conv stages (two 3x3 convs each, max-pool between) + global average pool.

    Sized for images up to ~32 px: ``width`` channels in the first stage, doubling per stage;
    ``feature_dim = 8 * width``.
    """

    def __init__(self, in_channels: int, width: int = 32):
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be positive, got {width}")
        chans = [width, 2 * width, 4 * width, 8 * width]
        layers: list[nn.Module] = []
        c_prev = in_channels
        for i, c in enumerate(chans):
            layers += [_conv_block(c_prev, c), _conv_block(c, c)]
            if i < len(chans) - 1:
                layers.append(nn.MaxPool2d(2))
            c_prev = c
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.feature_dim = chans[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def imagenet_input(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """``x`` ``(B, 1 or 3, H, W)`` as the ``(B, 3, size, size)`` an ImageNet network expects
    (antialiased bilinear resize; unchanged side when ``size`` is None)."""
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if size is not None and x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x


class TorchvisionNet(nn.Module):
    """A torchvision ResNet or ViT without its classifier, normalising inputs as it was trained
    (ImageNet ones also resized to ``input_size``)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, net: nn.Module, in_channels: int, imagenet_norm: bool, input_size: int | None = None):
        super().__init__()
        if isinstance(net, torchvision.models.VisionTransformer):
            self.feature_dim = net.hidden_dim
            net.heads = nn.Identity()
        else:
            self.feature_dim = typing.cast(nn.Linear, net.fc).in_features
            net.fc = nn.Identity()
        self.net = net
        self.in_channels = in_channels
        self.imagenet_norm = imagenet_norm
        self.input_size = input_size
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.imagenet_norm:
            x = (imagenet_input(x, self.input_size) - self.mean) / self.std
        return self.net(x)


def _unavailable(spec: Pretrained, why: str) -> WeightsUnavailable:
    return WeightsUnavailable(
        f"the {spec.name} backbone ({spec.pretraining}) is not available: {why}. Install {spec.package} "
        f"(pip install {spec.package}) and let it download its weights once, or copy them to "
        f"${WEIGHTS_ENV}/{spec.weights_file}; or choose --backbone small-cnn, which needs no weights")


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0 or Lite2 with ImageNet weights, without its classifier: images resized to
    ``input_size``, scaled to [-1, 1] as it was trained, average-pooled ``(B, 1280)`` features."""

    feature_dim = 1280

    def __init__(self, spec: Pretrained, input_size: int):
        super().__init__()
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as error:
            raise _unavailable(spec, f"its model code is not installed ({error})") from error
        path = local_weights(spec)
        if path is None:
            raise _unavailable(spec, "its weights package is not installed")
        self.net = EfficientNet.from_name(spec.arch)
        try:
            self.net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except Exception as error:
            raise WeightsUnavailable(f"{path}: not a valid {spec.arch} state dict ({error})") from error
        self.input_size = input_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (imagenet_input(x, self.input_size) - 0.5) / 0.5
        return self.net.extract_features(x).mean((2, 3))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Its ImageNet classifier's logits ``(B, 1000)`` from its own features ``(B, 1280)``
        (those ``forward`` gives, before the encoder normalises them)."""
        return self.net._fc(features)


def has_classifier(backbone: nn.Module) -> bool:
    """Whether ``backbone`` keeps its ImageNet classifier (``classify``): EfficientNet-Lite."""
    return callable(getattr(backbone, "classify", None))


@contextmanager
def recording_class_probs(backbone: nn.Module, out: np.ndarray) -> Iterator[None]:
    """While open, each forward pass of ``backbone`` (one with a classifier, :func:`has_classifier`)
    also writes its class probabilities ``(B, C)`` into the next rows of ``out`` ``(N, C)``: the
    features and the class scores of a frozen backbone from one pass over the images."""
    if not has_classifier(backbone):
        raise ValueError(f"{type(backbone).__name__} has no ImageNet classifier")
    done = 0

    def hook(module: nn.Module, inputs: tuple, features: torch.Tensor) -> None:
        nonlocal done
        probs = torch.softmax(typing.cast(typing.Any, module).classify(features).float(), 1).cpu().numpy()
        out[done:done + len(probs)] = probs
        done += len(probs)

    handle = backbone.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


class TimmEncoder(nn.Module):
    """A ``timm`` model without its classifier (DINOv2, CLIP image towers): images resized to
    ``input_size``, normalised with the model's own mean and std, its pooled ``(B, D)`` features
    (the class token for these ViTs)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, spec: Pretrained, input_size: int, download: bool = True):
        super().__init__()
        try:
            import timm
        except ImportError as error:
            raise _unavailable(spec, "timm is not installed") from error
        local = local_weights(spec)
        if local is None and not download:
            raise _unavailable(spec, "its weights are not on this machine")
        if local is None:
            try:
                local = fetch(spec.name)
            except WeightsUnavailable as error:  # offline, or the download failed
                raise _unavailable(spec, str(error)) from error
        try:
            net = timm.create_model(spec.arch, pretrained=True, num_classes=0, img_size=input_size,
                                    pretrained_cfg_overlay={"file": str(local)})
        except Exception as error:  # a bad file: safetensors errors
            raise _unavailable(spec, f"its weights could not be read from {local} ({type(error).__name__}: "
                                     f"{str(error)[:200]})") from error
        self.net = net
        config = typing.cast(dict, net.pretrained_cfg)
        self.feature_dim = int(typing.cast(int, net.num_features))
        self.input_size = input_size
        self.register_buffer("mean", torch.tensor(config.get("mean", IMAGENET_MEAN)).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(config.get("std", IMAGENET_STD)).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((imagenet_input(x, self.input_size) - self.mean) / self.std)


def cifar_resnet18(in_channels: int) -> TorchvisionNet:
    """ResNet-18 with a 3x3 stride-1 stem and no max-pool (the usual CIFAR variant)."""
    net = torchvision.models.resnet18(weights=None)
    net.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    return TorchvisionNet(net, in_channels, imagenet_norm=False)


def imagenet_weights_path(arch: str) -> Path:
    """Where the ImageNet weights of the torchvision ``arch`` are looked for first
    (``$SCAN_EXPLORER_WEIGHTS/<file>`` when set, else the torch hub cache, where they download to)."""
    filename = TORCHVISION_FILES[arch]
    custom = os.environ.get(WEIGHTS_ENV)
    return Path(custom) / filename if custom else torch_hub_dir() / "checkpoints" / filename


def imagenet_torchvision(arch: str, in_channels: int, download: bool = True, input_size: int | None = None) -> TorchvisionNet:
    """torchvision ResNet-18/50 or ViT-B/16 with ImageNet weights, from the local cache or a download.

    Raises :class:`WeightsUnavailable` naming the expected file when neither works.
    """
    path = imagenet_weights_path(arch)
    if not path.exists():
        if not download:
            raise WeightsUnavailable(f"ImageNet weights for {arch} not found at {path}")
        try:  # from the torch hub cache, or downloaded into it
            path = fetch(next(spec.name for spec in PRETRAINED_BACKBONES if spec.arch == arch))
        except WeightsUnavailable as error:
            raise WeightsUnavailable(f"{error}; or use --backbone small-cnn / resnet18-cifar, which need no "
                                     "weights") from error
    net = getattr(torchvision.models, arch)(weights=None)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    except Exception as error:
        raise WeightsUnavailable(f"{path}: not a valid {arch} state dict ({error})") from error
    return TorchvisionNet(net, in_channels, imagenet_norm=True, input_size=input_size)


def build_backbone(name: str, in_channels: int, width: int = 32, input_size: int = 128) -> nn.Module:
    """The backbone called ``name`` (one of :data:`BACKBONES`) for ``in_channels`` inputs;
    ``width``: the small CNN's; ``input_size``: the side pretrained backbones resize images to."""
    if in_channels not in (1, 3):
        raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
    if name == "small-cnn":
        return SmallCNN(in_channels, width)
    if name == "resnet18-cifar":
        return cifar_resnet18(in_channels)
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    spec = pretrained_spec(name)
    if spec.library == "torchvision":
        return imagenet_torchvision(spec.arch, in_channels, input_size=input_size)
    if spec.library == "efficientnet-lite":
        return EfficientNetLite(spec, input_size)
    return TimmEncoder(spec, input_size)
