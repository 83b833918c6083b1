"""Which SCAN head to keep: label-free rules side by side on the same trainings (issue 12, item 2).

    python bench/bench_heads.py RUN [RUN ...] [--snapshots 6]

For each finished run with labels: its SCAN heads are trained again the way its scan stage trains
them (its features or manifold, feature banks, neighbours, config and seed), every head saved at
``--snapshots`` epochs of the second half. Each rule keeps one head without labels; the table gives
that head's ACC, with the best and mean ACC of the heads at the last epoch (labels only score):

- lowest loss: the lowest loss on the held-out anchors at the last epoch (SCAN's rule);
- lowest loss, any epoch: the same over every snapshot (the reference code keeps the best epoch);
- most agreeing: the highest mean ARI with the other heads at the last epoch (the rule before the current one);
- kept: what a run keeps now, :func:`scan_core.method.clustering.choose_head` over every snapshot.
"""
from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from scan_core.config import RunConfig
from scan_core.data.artifacts import load_array
from scan_core.data.images import ImageSet
from scan_core.engine.context import RunContext
from scan_core.engine.models import cluster_model
from scan_core.engine.progress import Progress
from scan_core.method.clustering import ClusterHeads, choose_head, head_agreement, train_scan
from scan_core.method.metrics import hungarian_accuracy

RULES = ("lowest loss", "lowest loss, any epoch", "most agreeing", "kept")


def kept_by_rules(clusters: np.ndarray, losses: np.ndarray) -> dict[str, tuple[int, int]]:
    """``(snapshot, head)`` each rule keeps, from ``clusters`` ``(S, H, N)`` and ``losses`` ``(S, H)``."""
    heads = losses.shape[1]
    flat = lambda i: (int(i) // heads, int(i) % heads)
    return {"lowest loss": (len(losses) - 1, int(np.argmin(losses[-1]))),
            "lowest loss, any epoch": flat(np.argmin(losses)),
            "most agreeing": (len(losses) - 1, int(np.argmax(head_agreement(clusters[-1])))),
            "kept": flat(choose_head(clusters.reshape(-1, clusters.shape[-1]), losses.ravel())[0])}


def heads_again(run_dir: Path, snapshots: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(clusters (S, H, N), losses (S, H), labels (N,))`` of the run's heads trained again."""
    config = RunConfig.load(run_dir)
    config = replace(config, scan=replace(config.scan, snapshots=snapshots))
    images = ImageSet.load(run_dir / "images")
    if images.labels is None:
        raise ValueError(f"{run_dir}: its images have no labels to score the heads with")
    manifold = run_dir / "manifold.npy"
    ctx = RunContext(run_dir, config, torch.device("cpu"), Progress(Path(tempfile.mkdtemp()), show_bar=False),
                     images=images, features=load_array(run_dir / "features.npy"),
                     manifold=load_array(manifold) if manifold.exists() else None,
                     neighbors=load_array(run_dir / "neighbors.npy"))
    torch.manual_seed(config.seed)
    heads = ClusterHeads(ctx.head_features.shape[1], config.num_clusters, config.scan.num_heads, config.scan.hidden)
    model, augmented, clean = cluster_model(ctx, heads)
    taken = train_scan(model, augmented, clean, ctx.neighbors, config.scan, config.seed)
    return (np.stack([s.clusters.numpy() for s in taken]), np.stack([s.losses.numpy() for s in taken]),
            np.asarray(images.labels))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--snapshots", type=int, default=5)
    args = parser.parse_args()
    print("| run | best head | mean head | " + " | ".join(RULES) + " |\n" + "|---" * (3 + len(RULES)) + "|")
    within = dict.fromkeys(RULES, 0)
    for run_dir in args.runs:
        clusters, losses, labels = heads_again(run_dir, args.snapshots)
        last = [hungarian_accuracy(found, labels) for found in clusters[-1]]
        cells = []
        for rule, (snapshot, head) in kept_by_rules(clusters, losses).items():
            acc = hungarian_accuracy(clusters[snapshot, head], labels)
            within[rule] += max(last) - acc <= 0.01
            cells.append(f"{acc:.3f}")
        print(f"| {run_dir.name} | {max(last):.3f} | {np.mean(last):.3f} | " + " | ".join(cells) + " |", flush=True)
    print("| within 0.01 of the best head | | | " + " | ".join(f"{within[r]}/{len(args.runs)}" for r in RULES) + " |")


if __name__ == "__main__":
    main()
