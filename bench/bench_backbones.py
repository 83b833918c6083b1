"""Seconds per image of one frozen pass of every pretrained backbone at its own input size, and of
the strong augmentation a feature bank adds: the numbers behind ``scan_core.costs.PRETRAINED_COSTS``.

    python bench/bench_backbones.py [--images 96] [--threads 2]

Speed does not depend on the weights, so each network is built with random ones (no download).
Run it on idle cores: beside other work the times are off by 2x and more.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import torch
import torchvision

from scan_core.config import AugmentConfig
from scan_core.costs import PRETRAINED_COSTS
from scan_core.method.augment import strong_view
from scan_core.pretrained import PRETRAINED_BACKBONES, Pretrained

BATCH = 32


def random_network(spec: Pretrained) -> torch.nn.Module:
    """``spec``'s architecture with random weights, without its classifier."""
    if spec.library == "timm":
        import timm
        return timm.create_model(spec.arch, pretrained=False, num_classes=0, img_size=spec.input_size)
    if spec.library == "torchvision":
        return getattr(torchvision.models, spec.arch)(weights=None)
    from efficientnet_lite_pytorch import EfficientNet
    net = EfficientNet.from_name(spec.arch)
    net.forward = net.extract_features  # type: ignore[method-assign]
    return net


@torch.inference_mode()
def seconds_per_image(step, images: int, side: int) -> float:
    """Mean seconds per image of ``step`` on batches of :data:`BATCH` random images, after one warm-up batch."""
    batch = torch.rand(BATCH, 3, side, side)
    step(batch)
    started = time.perf_counter()
    for _ in range(max(1, images // BATCH)):
        step(batch)
    return (time.perf_counter() - started) / (max(1, images // BATCH) * BATCH)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.threads} threads, "
          f"torch {torch.__version__}, {args.images} images, batch {BATCH}\n")
    print("| backbone | side | pass s/image | in PRETRAINED_COSTS | strong view s/image |")
    print("|---|---|---|---|---|")
    augment = AugmentConfig()
    for spec in PRETRAINED_BACKBONES:
        net = random_network(spec).eval()
        forward = seconds_per_image(net, args.images, spec.input_size)
        view = seconds_per_image(lambda batch: strong_view(batch, augment), args.images, spec.input_size)
        print(f"| {spec.name} | {spec.input_size} | {forward:.4f} | {PRETRAINED_COSTS['cpu'][spec.name]:.4f} | {view:.4f} |",
              flush=True)


if __name__ == "__main__":
    main()
