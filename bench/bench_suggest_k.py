"""How close the suggested number of clusters comes to the true number of classes, on sets with
10, fewer and more classes, each in the space the matching preset learns on.

- digits (and subsets of 5 and 7 classes): the digits preset's UMAP of the pixels' whitened PCA,
  given as the run's manifold;
- Fashion-MNIST, a sample of 10,000 images (and its subsets of 4, 6 and 7 classes): HOG reduced
  by PCA, the fashion-mnist preset's neighbour space (its heads learn on SimCLR features, which
  take a training run to make: HOG stands in for both here), mapped by the suggestion's own UMAP;
- generated colour shapes, textures and both together (4, 4, 8 classes, ``bench/colour_sets.py``,
  300 images per class at 64 px): frozen EfficientNet-Lite0 features at 128 px, auto's colour space;
- Tux Paint clip art (``bench/stamp_sets.py``: 9 topics, 4 animal groups), when
  ``python bench/stamp_sets.py /tmp/stamps`` has made ``/tmp/stamps/topics`` and ``/tmp/stamps/animals``:
  the same frozen features, computed once for every seed.

Labels only count the classes. The target: a suggestion within 0.7-1.5x the truth.

    python bench/bench_suggest_k.py [--seeds 3] [--skip-fashion] [--skip-colour]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from scan_core.method.num_clusters import suggest_num_clusters

FASHION_SUBSETS = ([1, 5, 7, 8], [0, 1, 5, 7, 8, 9], [1, 2, 3, 5, 7, 8, 9])  # trouser/sandal/sneaker/bag...
DIGIT_SUBSETS = ([0, 1, 2, 3, 4], [0, 1, 2, 3, 4, 5, 6])
FASHION_SAMPLE = 10_000
STAMPS = Path("/tmp/stamps")
TARGET = (0.7, 1.5)  # suggested / true


def digits_spaces(seed: int):
    from sklearn.decomposition import PCA

    from scan_core.data.sources.builtin import load_digits
    from scan_core.method.manifold import fit_manifold
    digits = load_digits()
    pixels = digits.images.reshape(len(digits), -1).astype(np.float32) / 255
    for keep in (None, *DIGIT_SUBSETS):
        mask = np.ones(len(pixels), bool) if keep is None else np.isin(digits.labels, keep)
        features = PCA(32, whiten=True, random_state=seed).fit_transform(pixels[mask])
        yield (f"digits{'' if keep is None else f' ({len(keep)} classes)'}", features, fit_manifold(features, 10, seed),
               digits.labels[mask])


def fashion_spaces(seed: int):
    from scan_core.data.sources.builtin import load_fashion_mnist
    from scan_core.method.hog import hog_space
    fashion = load_fashion_mnist()
    sample = np.sort(np.random.default_rng(seed).choice(len(fashion), FASHION_SAMPLE, replace=False))
    space, labels = hog_space(fashion.images[sample], seed=seed), fashion.labels[sample]
    for keep in (None, *FASHION_SUBSETS):
        mask = np.ones(len(space), bool) if keep is None else np.isin(labels, keep)
        yield f"fashion-mnist{'' if keep is None else f' ({len(keep)} classes)'}", space[mask], None, labels[mask]


def colour_features(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """The frozen EfficientNet-Lite0 features (at 128 px) of the labelled folder's images, L2-normalised
    as a run's encoder writes them (``features.npy``), and their labels."""
    import torch

    from scan_core.data.sources import load_source
    from scan_core.method.backbones import build_backbone
    from scan_core.method.cosine import l2_normalize
    from scan_core.method.pretext import embed
    images = load_source(str(folder))
    network = build_backbone("efficientnet-lite0-imagenet", 3, input_size=128)
    return l2_normalize(embed(network, images.images, torch.device("cpu"), batch_size=256)), images.labels


def colour_spaces(seed: int, root: Path):
    from colour_sets import make_folder
    features = {}
    for kind in ("shapes", "textures"):
        features[kind] = colour_features(make_folder(root / f"{kind}-{seed}", kind, images=1200, size=64, seed=seed))
        yield f"colour {kind}", features[kind][0], None, features[kind][1]
    (a, la), (b, lb) = features["shapes"], features["textures"]
    yield "colour shapes + textures", np.concatenate([a, b]), None, np.concatenate([la, lb + la.max() + 1])


def stamp_spaces(cache: dict):
    """The clip-art sets' features (computed at the first seed, kept in ``cache``)."""
    for kind in ("topics", "animals"):
        if kind not in cache:
            cache[kind] = colour_features(STAMPS / kind)
        yield f"clip art {kind}", cache[kind][0], None, cache[kind][1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--skip-fashion", action="store_true")
    parser.add_argument("--skip-colour", action="store_true")
    args = parser.parse_args()
    rows: dict[str, list] = {}
    stamps: dict = {}
    with tempfile.TemporaryDirectory() as scratch:
        for seed in range(args.seeds):
            sources = [digits_spaces(seed)]
            sources += [] if args.skip_fashion else [fashion_spaces(seed)]
            sources += [] if args.skip_colour else [colour_spaces(seed, Path(scratch))]
            sources += [stamp_spaces(stamps)] if all((STAMPS / kind).is_dir() for kind in ("topics", "animals")) else []
            for source in sources:
                for name, points, embedding, labels in source:
                    started = time.time()
                    suggestion = suggest_num_clusters(points, embedding, seed=seed)
                    rows.setdefault(name, []).append((len(np.unique(labels)), len(points), suggestion.k,
                                                      time.time() - started))
                    print(f"  seed {seed} {name}: {suggestion.k} ({time.time() - started:.1f} s)", file=sys.stderr, flush=True)
    low, high = TARGET
    print(f"| set | images | classes | suggested K (per seed) | suggested / true | within {low}-{high}x | seconds |")
    print("|---|---|---|---|---|---|---|")
    hits = 0
    for name, runs in rows.items():
        true, count = runs[0][0], runs[0][1]
        ks = [k for _, _, k, _ in runs]
        ratios = [k / true for k in ks]
        inside = sum(low <= r <= high for r in ratios)
        hits += inside
        print(f"| {name} | {count:,} | {true} | {', '.join(map(str, ks))} | {np.mean(ratios):.2f} ± {np.std(ratios):.2f} "
              f"| {inside}/{len(ks)} | {np.mean([s for *_, s in runs]):.1f} |")
    print(f"\n{hits} of {sum(len(r) for r in rows.values())} suggestions within {low}-{high}x the true number of classes; "
          "seconds: the suggestion, with its UMAP fit where the set has no manifold (digits has one)")


if __name__ == "__main__":
    main()
