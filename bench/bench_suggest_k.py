"""How close the suggested number of clusters comes to the true number of classes, on sets with
10, fewer and more classes, each in the space the matching preset mines and learns on.

- digits (and subsets of 5 and 7 classes): the digits preset's UMAP of the pixels' whitened PCA;
- Fashion-MNIST, all 70,000 images (and subsets of 4, 6 and 7 classes): HOG reduced by PCA, the
  fashion-mnist preset's neighbour space (its heads learn on SimCLR features, which take a
  training run to make: HOG stands in for both here);
- generated colour shapes, textures and both together (4, 4, 8 classes, ``bench/colour_sets.py``,
  300 images per class at 64 px): frozen EfficientNet-Lite0 features at 128 px, auto's colour space.

Labels only count the classes. The target (issue 13): a suggestion within 0.8-1.3x the truth.

    python bench/bench_suggest_k.py [--seeds 3] [--skip-fashion] [--skip-colour]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from scan_core.method.neighbors import mine_neighbors
from scan_core.method.num_clusters import suggest_num_clusters

FASHION_SUBSETS = ([1, 5, 7, 8], [0, 1, 5, 7, 8, 9], [1, 2, 3, 5, 7, 8, 9])  # trouser/sandal/sneaker/bag...
DIGIT_SUBSETS = ([0, 1, 2, 3, 4], [0, 1, 2, 3, 4, 5, 6])


def digits_spaces(seed: int):
    from sklearn.decomposition import PCA

    from scan_core.data.sources.builtin import load_digits
    from scan_core.method.manifold import fit_manifold
    digits = load_digits()
    pixels = digits.images.reshape(len(digits), -1).astype(np.float32) / 255
    for keep in (None, *DIGIT_SUBSETS):
        mask = np.ones(len(pixels), bool) if keep is None else np.isin(digits.labels, keep)
        manifold = fit_manifold(PCA(32, whiten=True, random_state=seed).fit_transform(pixels[mask]), 10, seed)
        yield f"digits{'' if keep is None else f' ({len(keep)} classes)'}", manifold, digits.labels[mask]


def fashion_spaces(seed: int):
    from scan_core.data.sources.builtin import load_fashion_mnist
    from scan_core.method.hog import hog_space
    fashion = load_fashion_mnist()
    space = hog_space(fashion.images, seed=seed)
    for keep in (None, *FASHION_SUBSETS):
        mask = np.ones(len(space), bool) if keep is None else np.isin(fashion.labels, keep)
        yield f"fashion-mnist{'' if keep is None else f' ({len(keep)} classes)'}", space[mask], fashion.labels[mask]


def colour_spaces(seed: int, root: Path):
    import torch
    from colour_sets import make_folder

    from scan_core.data.sources import load_source
    from scan_core.method.backbones import build_backbone
    from scan_core.method.pretext import embed
    features = {}
    for kind in ("shapes", "textures"):
        images = load_source(str(make_folder(root / f"{kind}-{seed}", kind, images=1200, size=64, seed=seed)))
        network = build_backbone("efficientnet-lite0-imagenet", 3, input_size=128)
        features[kind] = (embed(network, images.images, torch.device("cpu"), batch_size=256), images.labels)
        yield f"colour {kind}", *features[kind]
    (a, la), (b, lb) = features["shapes"], features["textures"]
    yield "colour shapes + textures", np.concatenate([a, b]), np.concatenate([la, lb + la.max() + 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--skip-fashion", action="store_true")
    parser.add_argument("--skip-colour", action="store_true")
    args = parser.parse_args()
    rows: dict[str, list] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for seed in range(args.seeds):
            sources = [digits_spaces(seed)]
            sources += [] if args.skip_fashion else [fashion_spaces(seed)]
            sources += [] if args.skip_colour else [colour_spaces(seed, Path(scratch))]
            for source in sources:
                for name, points, labels in source:
                    neighbors = mine_neighbors(points, 20)
                    started = time.time()
                    suggestion = suggest_num_clusters(points, neighbors, seed=seed)
                    rows.setdefault(name, []).append((len(np.unique(labels)), len(points), suggestion.k,
                                                      time.time() - started))
                    print(f"  seed {seed} {name}: {suggestion.k} ({time.time() - started:.1f} s)", file=sys.stderr, flush=True)
    print("| set | images | classes | suggested K (per seed) | suggested / true | within 0.8-1.3x | seconds |")
    print("|---|---|---|---|---|---|---|")
    hits = 0
    for name, runs in rows.items():
        true, count = runs[0][0], runs[0][1]
        ks = [k for _, _, k, _ in runs]
        ratios = [k / true for k in ks]
        inside = sum(0.8 <= r <= 1.3 for r in ratios)
        hits += inside
        print(f"| {name} | {count:,} | {true} | {', '.join(map(str, ks))} | {np.mean(ratios):.2f} ± {np.std(ratios):.2f} "
              f"| {inside}/{len(ks)} | {np.mean([s for *_, s in runs]):.1f} |")
    print(f"\n{hits} of {sum(len(r) for r in rows.values())} suggestions within 0.8-1.3x the true number of classes; "
          "seconds: the suggestion from the mined neighbours (mining not counted)")


if __name__ == "__main__":
    main()
