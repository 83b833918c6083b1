"""Feature extractors: a small CNN for small images, a CIFAR-style ResNet-18, and torchvision
ResNet-18/50 with ImageNet weights when a weights file is available locally.

Every backbone maps float images ``(B, C, H, W)`` in [0, 1] to features ``(B, D)`` and exposes
``feature_dim``. Pretrained weights are only ever read with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn
import torchvision

from ..config import BACKBONES

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
        layers, c_prev = [], in_channels
        for i, c in enumerate(chans):
            layers += [_conv_block(c_prev, c), _conv_block(c, c)]
            if i < len(chans) - 1:
                layers.append(nn.MaxPool2d(2))
            c_prev = c
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.feature_dim = chans[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class TorchvisionResNet(nn.Module):
    """A torchvision ResNet without its classifier, normalising inputs as it was trained."""

    def __init__(self, net: nn.Module, in_channels: int, imagenet_norm: bool):
        super().__init__()
        self.feature_dim = net.fc.in_features
        net.fc = nn.Identity()
        self.net = net
        self.in_channels = in_channels
        self.imagenet_norm = imagenet_norm
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_channels == 1 and self.net.conv1.in_channels == 3:
            x = x.expand(-1, 3, -1, -1)
        if self.imagenet_norm:
            x = (x - self.mean) / self.std
        return self.net(x)


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


def imagenet_resnet(arch: str, in_channels: int, download: bool = True) -> TorchvisionResNet:
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
    return TorchvisionResNet(net, in_channels, imagenet_norm=True)


def build_backbone(name: str, in_channels: int, width: int = 32) -> nn.Module:
    """The backbone called ``name`` (one of :data:`BACKBONES`) for ``in_channels`` inputs."""
    if in_channels not in (1, 3):
        raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
    if name == "small-cnn":
        return SmallCNN(in_channels, width)
    if name == "resnet18-cifar":
        return cifar_resnet18(in_channels)
    if name in ("resnet18-imagenet", "resnet50-imagenet"):
        return imagenet_resnet(name.split("-")[0], in_channels)
    raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
