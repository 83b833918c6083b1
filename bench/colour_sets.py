"""Generated colour image folders to measure ``auto`` on (the bundled sets are all grayscale).

Each is an ImageFolder (``ROOT/<class>/<i>.png``) whose classes differ in shape or texture only:
colours, sizes, positions and rotations are drawn at random for every image, so a method that
clusters by colour scores near chance.

- ``shapes``: disc, square, triangle, cross, each filled in one random colour on another random
  background colour, random size, position and rotation.
- ``textures``: stripes, checks, dots, rings, in two random colours at a random scale and angle.

    python bench/colour_sets.py OUT_DIR [--images 600] [--size 64]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("disc", "square", "triangle", "cross")
TEXTURES = ("stripes", "checks", "dots", "rings")
KINDS = {"shapes": SHAPES, "textures": TEXTURES}


def _colours(rng: np.random.Generator) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """A foreground and a background colour at least 120 apart (L1 over RGB), so the shape shows."""
    while True:
        a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        if np.abs(a - b).sum() >= 120:
            return tuple(int(v) for v in a), tuple(int(v) for v in b)


def shape_image(kind: str, size: int, rng: np.random.Generator) -> Image.Image:
    """One ``size`` x ``size`` RGB image of ``kind`` (one of :data:`SHAPES`)."""
    fg, bg = _colours(rng)
    big = 4 * size  # drawn large and shrunk: smooth edges at any size
    image = Image.new("RGB", (big, big), bg)
    draw = ImageDraw.Draw(image)
    radius = rng.uniform(0.22, 0.38) * big
    cx, cy = rng.uniform(radius + 0.05 * big, big - radius - 0.05 * big, 2)
    angle = rng.uniform(0, 2 * np.pi)

    def polygon(corners: np.ndarray) -> list[tuple[float, float]]:
        turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        return [(cx + x, cy + y) for x, y in corners @ turn.T]

    if kind == "disc":
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=fg)
    elif kind == "square":
        r = radius / np.sqrt(2)
        draw.polygon(polygon(np.array([[-r, -r], [r, -r], [r, r], [-r, r]])), fill=fg)
    elif kind == "triangle":
        t = np.array([0, 2 * np.pi / 3, 4 * np.pi / 3])
        draw.polygon(polygon(radius * np.stack([np.cos(t), np.sin(t)], 1)), fill=fg)
    elif kind == "cross":
        w = radius / 3
        for corners in ([[-radius, -w], [radius, -w], [radius, w], [-radius, w]],
                        [[-w, -radius], [w, -radius], [w, radius], [-w, radius]]):
            draw.polygon(polygon(np.array(corners)), fill=fg)
    else:
        raise ValueError(f"unknown shape {kind!r}; choose one of {', '.join(SHAPES)}")
    return image.resize((size, size), Image.Resampling.LANCZOS)


def texture_image(kind: str, size: int, rng: np.random.Generator) -> Image.Image:
    """One ``size`` x ``size`` RGB image of ``kind`` (one of :data:`TEXTURES`)."""
    fg, bg = np.array(_colours(rng)[0]), np.array(_colours(rng)[1])
    period = rng.uniform(0.15, 0.3) * size
    angle = rng.uniform(0, np.pi)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    u = (x * np.cos(angle) + y * np.sin(angle)) / period + rng.uniform(0, 1)
    v = (-x * np.sin(angle) + y * np.cos(angle)) / period + rng.uniform(0, 1)
    if kind == "stripes":
        mask = (u % 1) < 0.5
    elif kind == "checks":
        mask = ((np.floor(u) + np.floor(v)) % 2) == 0
    elif kind == "dots":
        mask = ((u % 1 - 0.5) ** 2 + (v % 1 - 0.5) ** 2) < 0.09
    elif kind == "rings":
        cx, cy = rng.uniform(0.2, 0.8, 2) * size
        mask = (np.hypot(x - cx, y - cy) / period % 1) < 0.5
    else:
        raise ValueError(f"unknown texture {kind!r}; choose one of {', '.join(TEXTURES)}")
    pixels = np.where(mask[..., None], fg, bg).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def make_folder(root: Path, kind: str, images: int = 600, size: int = 64, seed: int = 0) -> Path:
    """Write ``images`` images of ``kind`` ("shapes" or "textures"), as many per class, under ``root``."""
    if kind not in KINDS:
        raise ValueError(f"unknown set {kind!r}; choose one of {', '.join(KINDS)}")
    draw = shape_image if kind == "shapes" else texture_image
    rng = np.random.default_rng(seed)
    classes = KINDS[kind]
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(images // len(classes)):
            draw(name, size, rng).save(root / name / f"{i:05d}.png")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    for kind in KINDS:
        print(make_folder(args.out / f"{kind}-{args.size}", kind, args.images, args.size))


if __name__ == "__main__":
    main()
