"""Batched image augmentation on tensors, with independent random parameters per image.

torchvision's v2 transforms draw one set of random parameters per call, so applied to a batch
every image gets the same crop. Here every op draws a parameter per image and is applied to the
whole batch at once: all geometric ops of a view are folded into one affine matrix per image and
resampled with a single ``grid_sample``; photometric ops are computed for the batch and kept
where a per-image mask says so. Input and output are float tensors ``(B, C, H, W)`` in ``[0, 1]``.

Two recipes are provided:

* :func:`simclr_view`  - SimCLR views (Chen et al., 2020): random resized crop, flip, colour
  jitter (p=0.8), grayscale (p=0.2); gentle crops and no colour for small grayscale images.
* :func:`strong_view`  - SCAN's strong augmentation (Van Gansbeke et al., 2020, after
  RandAugment): flip + crop, ``num_ops`` ops drawn from a fixed list at random magnitudes, Cutout.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..config import STRONG_OPS, AugmentConfig

GRAY_WEIGHTS = (0.299, 0.587, 0.114)


def to_tensor(images: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 images ``(B, H, W, C)`` -> float ``(B, C, H, W)`` in [0, 1] on ``device``."""
    batch = torch.tensor(np.asarray(images))  # copies a read-only memmap
    if torch.device(device).type == "cuda":
        batch = batch.pin_memory()  # page-locked: the copy to the GPU goes on beside its computation
    batch = batch.to(device, non_blocking=True)
    if batch.ndim != 4:
        raise ValueError(f"expected images of shape (B, H, W, C), got {tuple(batch.shape)}")
    return batch.permute(0, 3, 1, 2).float().div_(255).contiguous(memory_format=torch.channels_last)


def _uniform(n: int, low: float, high: float, device) -> torch.Tensor:
    return torch.empty(n, device=device).uniform_(low, high)


def _chance(n: int, p: float, device) -> torch.Tensor:
    """Boolean ``(n,)`` mask, True with probability ``p``."""
    return torch.rand(n, device=device) < p


def _where(mask: torch.Tensor, changed: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.view(-1, 1, 1, 1), changed, original)


def _warp(x: torch.Tensor, theta: torch.Tensor, padding: str = "zeros") -> torch.Tensor:
    """Resample every image through its own affine matrix ``theta`` ``(B, 2, 3)``; outside
    pixels are black (``zeros``) or repeat the edge (``border``, for crops)."""
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False)


def _crop_flip_theta(b: int, scale: tuple[float, float], flip: bool, device) -> torch.Tensor:
    """Affine matrices ``(B, 2, 3)`` of a random resized crop (ratio 3/4..4/3) and a flip."""
    area = _uniform(b, *scale, device)
    log_ratio = _uniform(b, math.log(3 / 4), math.log(4 / 3), device)
    ratio = torch.exp(log_ratio)
    width = torch.sqrt(area * ratio).clamp(max=1.0)
    height = torch.sqrt(area / ratio).clamp(max=1.0)
    centre_x = (torch.rand(b, device=device) * 2 - 1) * (1 - width)
    centre_y = (torch.rand(b, device=device) * 2 - 1) * (1 - height)
    sign = torch.where(_chance(b, 0.5, device), -1.0, 1.0) if flip else torch.ones(b, device=device)
    theta = torch.zeros(b, 2, 3, device=device)
    theta[:, 0, 0] = width * sign
    theta[:, 1, 1] = height
    theta[:, 0, 2] = centre_x
    theta[:, 1, 2] = centre_y
    return theta


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luma ``(B, 1, H, W)`` of RGB or gray images."""
    if x.shape[1] == 1:
        return x
    weights = torch.tensor(GRAY_WEIGHTS, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``other + factor * (x - other)`` with a factor per image, clamped to [0, 1]."""
    return (other + factor.view(-1, 1, 1, 1) * (x - other)).clamp_(0, 1)


def adjust_brightness(x, factor):
    return (x * factor.view(-1, 1, 1, 1)).clamp(0, 1)


def adjust_contrast(x, factor):
    mean = grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
    return _blend(x, mean.expand_as(x), factor)


def adjust_saturation(x, factor):
    return x if x.shape[1] == 1 else _blend(x, grayscale(x).expand_as(x), factor)


def adjust_hue(x, shift):
    """Rotate chroma in YIQ space by ``shift`` turns (``shift`` in [-0.5, 0.5]) per image."""
    if x.shape[1] == 1:
        return x
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
                          device=x.device, dtype=x.dtype)
    angle = shift * 2 * math.pi
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation = torch.zeros(len(x), 3, 3, device=x.device, dtype=x.dtype)
    rotation[:, 0, 0] = 1
    rotation[:, 1, 1], rotation[:, 1, 2] = cos, -sin
    rotation[:, 2, 1], rotation[:, 2, 2] = sin, cos
    matrix = torch.linalg.inv(to_yiq) @ rotation @ to_yiq  # (B, 3, 3)
    return torch.einsum("bij,bjhw->bihw", matrix, x).clamp(0, 1)


def adjust_sharpness(x, factor):
    kernel = torch.tensor([[1, 1, 1], [1, 5, 1], [1, 1, 1]], device=x.device, dtype=x.dtype) / 13
    kernel = kernel.view(1, 1, 3, 3).repeat(x.shape[1], 1, 1, 1)
    blurred = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=x.shape[1])
    return _blend(x, blurred, factor)


def autocontrast(x):
    low = x.amin(dim=(2, 3), keepdim=True)
    high = x.amax(dim=(2, 3), keepdim=True)
    return ((x - low) / (high - low).clamp(min=1e-3)).clamp(0, 1)


def equalize(x):
    """Histogram equalisation per image and channel (as PIL's): the darkest level stays at 0,
    the others spread by their cumulative share; a constant channel is left unchanged."""
    b, c, h, w = x.shape
    levels = (x * 255).round().long().reshape(b * c, h * w)
    histogram = torch.zeros(b * c, 256, device=x.device).scatter_add_(
        1, levels, torch.ones_like(levels, dtype=torch.float))
    cdf = histogram.cumsum(1) / (h * w)
    darkest = cdf.gather(1, levels.min(1, keepdim=True).values)
    spread = 1 - darkest
    equalized = (cdf.gather(1, levels) - darkest) / spread.clamp(min=1e-6)
    flat = x.reshape(b * c, h * w)
    return torch.where(spread > 0, equalized, flat).reshape(b, c, h, w)


def solarize(x, threshold):
    return torch.where(x >= threshold.view(-1, 1, 1, 1), 1 - x, x)


def posterize(x, bits):
    step = (2 ** (8 - bits)).view(-1, 1, 1, 1).float()
    return torch.floor(x * 255 / step) * step / 255


def cutout(x: torch.Tensor, max_fraction: float) -> torch.Tensor:
    """Zero one random square per image, side up to ``max_fraction`` of the image side."""
    b, _, h, w = x.shape
    side = (torch.rand(b, device=x.device) * max_fraction * min(h, w)).long().view(-1, 1, 1)
    cy = torch.randint(0, h, (b, 1, 1), device=x.device)
    cx = torch.randint(0, w, (b, 1, 1), device=x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    hole = ((rows - cy).abs() * 2 < side) & ((cols - cx).abs() * 2 < side)
    return x.masked_fill(hole.unsqueeze(1), 0.0)


def simclr_view(x: torch.Tensor, config: AugmentConfig) -> torch.Tensor:
    """One SimCLR view of every image: crop + flip, colour jitter (p), grayscale (p)."""
    b, device = len(x), x.device
    x = _warp(x, _crop_flip_theta(b, config.crop_scale, config.flip, device), padding="border")
    bright, contrast, saturation, hue = config.jitter
    jitter = _chance(b, config.jitter_p, device)
    if bright:
        x = _where(jitter, adjust_brightness(x, _uniform(b, 1 - bright, 1 + bright, device)), x)
    if contrast:
        x = _where(jitter, adjust_contrast(x, _uniform(b, 1 - contrast, 1 + contrast, device)), x)
    if saturation and x.shape[1] == 3:
        x = _where(jitter, adjust_saturation(x, _uniform(b, 1 - saturation, 1 + saturation, device)), x)
    if hue and x.shape[1] == 3:
        x = _where(jitter, adjust_hue(x, _uniform(b, -hue, hue, device)), x)
    if config.grayscale_p and x.shape[1] == 3:
        x = _where(_chance(b, config.grayscale_p, device), grayscale(x).expand_as(x), x)
    return x


def _geometric_theta(b: int, op: str, device) -> torch.Tensor:
    """Affine matrix ``(B, 2, 3)`` for one RandAugment geometric op at a random magnitude."""
    theta = torch.zeros(b, 2, 3, device=device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    if op == "rotate":
        angle = _uniform(b, -30, 30, device) * math.pi / 180
        theta[:, 0, 0], theta[:, 0, 1] = torch.cos(angle), -torch.sin(angle)
        theta[:, 1, 0], theta[:, 1, 1] = torch.sin(angle), torch.cos(angle)
    elif op == "shear_x":
        theta[:, 0, 1] = _uniform(b, -0.1, 0.1, device)
    elif op == "shear_y":
        theta[:, 1, 0] = _uniform(b, -0.1, 0.1, device)
    elif op == "translate_x":
        theta[:, 0, 2] = _uniform(b, -0.2, 0.2, device)  # +-10 % of the side (grid spans 2)
    elif op == "translate_y":
        theta[:, 1, 2] = _uniform(b, -0.2, 0.2, device)
    return theta


GEOMETRIC_OPS = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")
PIXEL_OPS = {
    "autocontrast": lambda x, b, d: autocontrast(x),
    "equalize": lambda x, b, d: equalize(x),
    "solarize": lambda x, b, d: solarize(x, _uniform(b, 0.5, 1.0, d)),
    "color": lambda x, b, d: adjust_saturation(x, _uniform(b, 0.05, 0.95, d)),
    "contrast": lambda x, b, d: adjust_contrast(x, _uniform(b, 0.05, 0.95, d)),
    "brightness": lambda x, b, d: adjust_brightness(x, _uniform(b, 0.05, 0.95, d)),
    "sharpness": lambda x, b, d: adjust_sharpness(x, _uniform(b, 0.05, 0.95, d)),
    "posterize": lambda x, b, d: posterize(x, torch.randint(4, 9, (b,), device=d)),
}
if ("identity", *GEOMETRIC_OPS, *PIXEL_OPS) != STRONG_OPS:  # the config declares them, in this order
    raise ImportError("scan_core.config.STRONG_OPS does not list the ops of this module")


def _compose(theta_a: torch.Tensor, theta_b: torch.Tensor) -> torch.Tensor:
    """Affine matrix of applying ``theta_b`` then ``theta_a`` to sampling coordinates."""
    bottom = torch.tensor([0.0, 0.0, 1.0], device=theta_a.device).expand(len(theta_a), 1, 3)
    full_a = torch.cat([theta_a, bottom], 1)
    full_b = torch.cat([theta_b, bottom], 1)
    return (full_a @ full_b)[:, :2]


def strong_view(x: torch.Tensor, config: AugmentConfig) -> torch.Tensor:
    """SCAN's strong augmentation: crop/flip, ``strong_ops`` random ops per image, Cutout."""
    b, device = len(x), x.device
    ops = torch.rand(b, len(STRONG_OPS), device=device).argsort(1)[:, : config.strong_ops]
    chosen = {name: (ops == i).any(1) for i, name in enumerate(STRONG_OPS)}
    theta = _crop_flip_theta(b, (max(config.crop_scale[0], 0.5), 1.0), config.flip, device)
    for name in GEOMETRIC_OPS:
        identity = _geometric_theta(b, "identity", device)
        theta = _compose(theta, torch.where(chosen[name].view(-1, 1, 1),
                                            _geometric_theta(b, name, device), identity))
    x = _warp(x, theta)
    x = x.contiguous()
    for name, op in PIXEL_OPS.items():
        mask = chosen[name]
        count = int(mask.sum())
        if count:
            x[mask] = op(x[mask], count, device)
    return cutout(x, config.cutout) if config.cutout else x
