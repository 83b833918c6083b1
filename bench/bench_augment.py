"""Batched tensor augmentation vs the same kind of ops on PIL images one at a time.

    python bench/bench_augment.py

Times one batch of 256 images x 2 views (SimCLR recipe) and the strong (RandAugment + Cutout)
recipe, for 28x28 grayscale and 32x32 colour images.
"""
from __future__ import annotations

import time

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

from scan_core.method.augment import AugmentConfig, simclr_view, strong_view, to_tensor


def best_of(fn, repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times) * 1000


def main() -> None:
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    print("| images | recipe | batched tensor (ms) | PIL one at a time (ms) | speed-up |")
    print("|---|---|---|---|---|")
    for size, channels in ((28, 1), (32, 3)):
        images = rng.integers(0, 256, (256, size, size, channels), dtype=np.uint8)
        pils = [Image.fromarray(img.squeeze(-1) if channels == 1 else img) for img in images]
        config = AugmentConfig() if channels == 3 else AugmentConfig(jitter=(0.4, 0.4, 0, 0), grayscale_p=0)
        pil_simclr = v2.Compose([v2.RandomResizedCrop(size, scale=config.crop_scale), v2.RandomHorizontalFlip(),
                                 v2.RandomApply([v2.ColorJitter(*config.jitter)], p=config.jitter_p),
                                 v2.RandomGrayscale(config.grayscale_p), v2.PILToTensor()])
        pil_strong = v2.Compose([v2.RandomHorizontalFlip(), v2.RandomResizedCrop(size, scale=(0.5, 1)),
                                 v2.RandAugment(num_ops=config.strong_ops), v2.PILToTensor(),
                                 v2.ToDtype(torch.float32, scale=True), v2.RandomErasing(p=1.0, scale=(0.0, 0.25))])
        for recipe, batched, per_image in (
            ("SimCLR, 2 views", lambda: [simclr_view(to_tensor(images), config) for _ in range(2)],
             lambda: [torch.stack([pil_simclr(p) for p in pils]) for _ in range(2)]),
            ("strong", lambda: strong_view(to_tensor(images), config),
             lambda: torch.stack([pil_strong(p) for p in pils])),
        ):
            fast, slow = best_of(batched), best_of(per_image)
            print(f"| 256 x {size}x{size}x{channels} | {recipe} | {fast:.1f} | {slow:.1f} | {slow / fast:.1f}x |")


if __name__ == "__main__":
    main()
