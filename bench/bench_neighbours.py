"""Top-20 neighbour purity of each space SCAN can mine in, on all 70k Fashion-MNIST images.

    python bench/bench_neighbours.py [--run DIR]

Spaces: raw pixels, PCA-100 of the pixels, HOG (PCA-128), and with ``--run`` (a finished
fashion-mnist run) its SimCLR features and the rank fusion of SimCLR with PCA pixels.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from scan_core.data.sources import load_source
from scan_core.method.hog import hog_space
from scan_core.method.neighbors import fuse_neighbors, mine_neighbors, neighbor_purity
from scan_core.method.pretext import PixelPCA, embed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="a finished fashion-mnist run, for its SimCLR features")
    args = parser.parse_args()
    images = load_source("fashion-mnist")
    pixels = np.asarray(images.images)
    spaces = {"raw pixels": lambda: pixels.reshape(len(pixels), -1).astype(np.float32),
              "PCA-100 of pixels": lambda: embed(PixelPCA.fit(pixels, 100, 0).project, pixels, "cpu"),
              "HOG, PCA-128": lambda: hog_space(pixels)}
    if args.run:
        spaces["SimCLR features (run)"] = lambda: np.load(args.run / "features.npy")
    print("| space | top-20 purity | seconds (space + search) |\n|---|---|---|")
    lists = {}
    for name, make in spaces.items():
        started = time.time()
        lists[name] = mine_neighbors(make(), 20)
        print(f"| {name} | {neighbor_purity(lists[name], images.labels):.3f} | {time.time() - started:.0f} |",
              flush=True)
    if args.run:
        fused = fuse_neighbors([lists["SimCLR features (run)"], lists["PCA-100 of pixels"]], 20)
        print(f"| rank fusion of SimCLR and PCA-100 | {neighbor_purity(fused, images.labels):.3f} | – |")


if __name__ == "__main__":
    main()
