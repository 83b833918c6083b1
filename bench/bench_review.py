"""How well the review queue finds misclustered images, on finished runs with labels.

An image is misclustered when its cluster's class (clusters matched one-to-one to classes by the
Hungarian method) is not its label. For the first ``--top`` images of the queue (and, for
comparison, of the mined neighbours' vote alone, the top-two margin of the probabilities and the
lowest confidence) the table gives the share that are misclustered and that share over the share in
a random pick of as many (the run's error rate).

    python bench/bench_review.py RUN_DIR [RUN_DIR ...] [--top 500]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from scan_core.explore.results import RunResults
from scan_core.explore.review import review_queue
from scan_core.method.neighbors import mine_neighbors


def misclustered(clusters: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: the image's cluster is matched to another class than its label."""
    table = np.zeros((clusters.max() + 1, labels.max() + 1), dtype=np.int64)
    np.add.at(table, (clusters, labels), 1)
    rows, cols = linear_sum_assignment(-table)
    mapped = np.full(len(table), -1)
    mapped[rows] = cols
    return mapped[clusters] != labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=500)
    args = parser.parse_args()
    print(f"| run | images | misclustered | queue (first {args.top}) | × random | mined vote alone | × | "
          "top-two margin alone | × | low confidence | × | ceiling × |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for run_dir in args.runs:
        results = RunResults.load(run_dir)
        if results.feature_neighbors is None and results.config["neighbor_space"] != "features":
            # a run made before the neighbors stage kept them: found here as that stage does
            results.feature_neighbors = mine_neighbors(results.features, results.config["num_neighbors"])
        wrong = misclustered(results.clusters, results.images.labels)
        queue = review_queue(results.probs, results.neighbor_lists(), results.clusters)
        top_two = np.sort(results.probs, axis=1)[:, -2:]
        top = min(args.top, len(wrong) // 4)
        rankings = {"queue": queue.order, "mined": np.argsort(-queue.against[0], kind="stable"),
                    "margin": np.argsort(top_two[:, 1] - top_two[:, 0], kind="stable"),
                    "confidence": np.argsort(results.confidence, kind="stable")}
        base = wrong.mean()
        cells = []
        for order in rankings.values():
            share = wrong[order[:top]].mean()
            cells += [f"{share:.3f}", f"{share / base:.2f}"]
        ceiling = min(1.0, wrong.sum() / top) / base
        print(f"| {run_dir.name} | {len(wrong):,} | {base:.3f} | " + " | ".join(cells) + f" | {ceiling:.2f} |")
    print(f"\nfirst {args.top} images (a quarter of the run when smaller); labels only score the queue; "
          "ceiling: every image picked misclustered")


if __name__ == "__main__":
    main()
