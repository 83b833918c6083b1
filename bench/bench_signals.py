"""Label-free signals of finished runs beside their ACC: could one of them choose between two ways
of clustering the same images (issue 12: the HOG manifold or SimCLR features for grayscale)?

    python bench/bench_signals.py RUN [RUN ...]

All runs must be on the same images. For each run's SCAN clusters: its ACC (labels only score), the
mean confidence (top probability), the share of the 20 nearest neighbours in the HOG space and in
the pixels' PCA-50 that share an image's cluster, the highest agreement among its heads (mean ARI,
from ``metrics.json``) and its mean ARI with the other runs' clusters.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score

from scan_core.data.images import ImageSet
from scan_core.method.hog import hog_space
from scan_core.method.metrics import hungarian_accuracy
from scan_core.method.neighbors import mine_neighbors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    images = ImageSet.load(args.runs[0] / "images")
    pixels = np.asarray(images.images).reshape(len(images), -1).astype(np.float32)
    sample = np.random.default_rng(0).permutation(len(pixels))[:20_000]
    graphs = {"HOG": mine_neighbors(hog_space(np.asarray(images.images)), 20),
              "pixels": mine_neighbors(PCA(50, random_state=0).fit(pixels[sample]).transform(pixels).astype(np.float32), 20)}
    found = {}
    print("| run | ACC | confidence | agreement with the HOG 20-NN | with the pixels' 20-NN | best head agreement "
          "| mean ARI with the other runs |\n|---|---|---|---|---|---|---|")
    rows = []
    for run_dir in args.runs:
        probs = np.load(run_dir / "scan_probs.npy")
        found[run_dir] = clusters = probs.argmax(1)
        agreement = np.ravel(json.loads((run_dir / "metrics.json").read_text())["scan"]["head_agreement"])
        rows.append((run_dir, hungarian_accuracy(clusters, images.labels), probs.max(1).mean(),
                     *((clusters[graph] == clusters[:, None]).mean() for graph in graphs.values()), agreement.max()))
    for run_dir, *values in rows:
        others = [adjusted_rand_score(found[run_dir], found[o]) for o in args.runs if o != run_dir]
        print(f"| {run_dir.name} | " + " | ".join(f"{v:.3f}" for v in values)
              + f" | {np.mean(others) if others else float('nan'):.3f} |")


if __name__ == "__main__":
    main()
