"""Generated grayscale image folders to measure ``auto`` on: kinds no preset covers.

Each is an ImageFolder (``ROOT/<class>/<i>.png``):

- ``glyphs``: capital letters, each image in one of the installed TrueType fonts (DejaVu,
  Liberation: serif, sans, mono, bold, italic, condensed) at a random size, position, slant and
  rotation, with a little blur and noise: the kind of handwritten or printed characters a user
  brings, where a horizontal flip changes the class.
- ``shapes``, ``textures``: :mod:`colour_sets`' shapes and textures drawn in grayscale, at least
  40 grey levels between figure and ground.

    python bench/gray_sets.py OUT_DIR [--images 6000] [--size 28] [--letters ABCDEFGHKMNPRSU]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from colour_sets import KINDS, shape_image, texture_image
from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/truetype/liberation"))
LETTERS = "ABCDEFGHKMNPRSU"


def fonts() -> list[Path]:
    """The installed text fonts (the maths font left out)."""
    found = sorted(p for d in FONT_DIRS if d.is_dir() for p in d.glob("*.ttf") if "Math" not in p.name)
    if not found:
        raise ValueError(f"no TrueType fonts under {', '.join(map(str, FONT_DIRS))}; install fonts-dejavu-core")
    return found


def glyph_image(letter: str, size: int, font_files: list[Path], rng: np.random.Generator) -> Image.Image:
    """One ``size`` x ``size`` grayscale image of ``letter``: white on black, random font and pose."""
    big = 4 * size
    font = ImageFont.truetype(str(font_files[rng.integers(len(font_files))]), int(rng.uniform(0.55, 0.8) * big))
    image = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = draw.textbbox((0, 0), letter, font=font)
    x = (big - (right - left)) / 2 - left + rng.uniform(-0.08, 0.08) * big
    y = (big - (bottom - top)) / 2 - top + rng.uniform(-0.08, 0.08) * big
    draw.text((x, y), letter, fill=int(rng.integers(180, 256)), font=font)
    shear = rng.uniform(-0.2, 0.2)
    image = image.transform((big, big), Image.Transform.AFFINE, (1, shear, -shear * big / 2, 0, 1, 0),
                            resample=Image.Resampling.BILINEAR)
    image = image.rotate(rng.uniform(-15, 15), resample=Image.Resampling.BILINEAR)
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0, 2.0))).resize((size, size), Image.Resampling.LANCZOS)
    noisy = np.asarray(image, np.float32) + rng.normal(0, 8, (size, size))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "L")


def gray_image(kind: str, name: str, size: int, rng: np.random.Generator) -> Image.Image:
    """One grayscale shape or texture (``kind`` "shapes" / "textures"), redrawn until figure and
    ground differ by at least 40 grey levels."""
    draw = shape_image if kind == "shapes" else texture_image
    while True:
        image = draw(name, size, rng).convert("L")
        low, high = np.percentile(np.asarray(image), [5, 95])
        if high - low >= 40:
            return image


def make_folder(root: Path, kind: str, images: int, size: int, seed: int = 0, letters: str = LETTERS) -> Path:
    """Write ``images`` images of ``kind`` (glyphs, shapes, textures), as many per class, under ``root``."""
    rng = np.random.default_rng(seed)
    if kind == "glyphs":
        font_files = fonts()
        classes, draw = list(letters), lambda name: glyph_image(name, size, font_files, rng)
    elif kind in KINDS:
        classes, draw = list(KINDS[kind]), lambda name: gray_image(kind, name, size, rng)
    else:
        raise ValueError(f"unknown set {kind!r}; choose glyphs, {', '.join(KINDS)}")
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(images // len(classes)):
            draw(name).save(root / name / f"{i:05d}.png")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--kinds", nargs="+", default=["glyphs", *KINDS])
    parser.add_argument("--images", type=int, default=6000)
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--letters", default=LETTERS)
    args = parser.parse_args()
    for kind in args.kinds:
        print(make_folder(args.out / f"{kind}-{args.size}", kind, args.images, args.size, letters=args.letters))


if __name__ == "__main__":
    main()
