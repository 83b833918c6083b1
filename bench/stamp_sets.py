"""Labelled folders of semantic colour clip art, from Debian's ``tuxpaint-stamps-default``
(``/usr/share/tuxpaint/stamps``: PNG and SVG stamps in topic folders), to measure ``auto`` on the
kind of folder most users bring: classes that differ in what the picture shows, not in shape.

- ``topics``: one class per top-level topic folder with at least :data:`MIN_IMAGES` stamps
  (animals, food, household, town, vehicles, ...), every stamp below it included: imbalanced as
  the package is (the bench reports majority-vote ACC and NMI beside Hungarian ACC).
- ``animals``: the animal groups (birds, fish, insects, mammals) with at least 10 stamps.

A stamp drawn both as PNG and as SVG is taken once (the SVG, which the folder loader renders);
mirrored copies (``*_mirror``) are left out. Files are linked or copied as they are: the product
reads them as it reads a user's folder.

    python bench/stamp_sets.py OUT_DIR [--stamps /usr/share/tuxpaint/stamps]
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

STAMPS = Path("/usr/share/tuxpaint/stamps")
MIN_IMAGES = 40
MIN_ANIMALS = 10
EXTENSIONS = (".svg", ".png")  # in order of preference for a stamp drawn both ways


def stamps_under(folder: Path) -> list[Path]:
    """The stamps under ``folder``, one file per drawing, mirrored copies left out, sorted."""
    chosen: dict[Path, Path] = {}
    for extension in reversed(EXTENSIONS):  # the preferred one last: it replaces the other
        for path in folder.rglob(f"*{extension}"):
            if not path.stem.endswith("_mirror"):
                chosen[path.with_suffix("")] = path
    return sorted(chosen.values())


def make_set(out: Path, kind: str, stamps: Path = STAMPS) -> Path:
    """Write the ``kind`` set (``topics`` or ``animals``) as ``out/<kind>/<class>/<file>``; returns its folder."""
    if not stamps.is_dir():
        raise SystemExit(f"{stamps} not found: install Debian's tuxpaint-stamps-default (make setup does)")
    if kind == "topics":
        groups, least = sorted(p for p in stamps.iterdir() if p.is_dir()), MIN_IMAGES
    elif kind == "animals":
        groups, least = sorted(p for p in (stamps / "animals").iterdir() if p.is_dir()), MIN_ANIMALS
    else:
        raise ValueError(f"kind must be topics or animals, not {kind!r}")
    root = out / kind
    if root.exists():
        shutil.rmtree(root)
    for group in groups:
        files = stamps_under(group)
        if len(files) < least:
            continue
        (root / group.name).mkdir(parents=True)
        for number, path in enumerate(files):
            shutil.copyfile(path, root / group.name / f"{number:04d}-{path.name}")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--stamps", type=Path, default=STAMPS)
    args = parser.parse_args()
    for kind in ("topics", "animals"):
        root = make_set(args.out, kind, args.stamps)
        counts = {folder.name: len(list(folder.iterdir())) for folder in sorted(root.iterdir())}
        print(f"{root}: {sum(counts.values())} stamps, {counts}")


if __name__ == "__main__":
    main()
