"""Refine against the simple peers, as a simulated user labels n images of a finished run.

The user labels n images with their true class, each as a move to (or an accept of) the cluster
matched to that class (Hungarian, on the run's clusters): the images are picked by the review queue
(most doubtful first), by the Review page's "to teach" list (the app's picks for a refine: the
image nearest each of n k-means centres, ``teaching_picks``) or at random. Then, with the same labels:

- refine: ``python -m scan_core refine`` on a copy of the run (the app's path: curation edits,
  ``refine_labels.json``, the refine stage), with the run's settings;
- logistic regression on the features the run's heads learn on (scikit-learn);
- label spreading over the run's mined kNN graph (scikit-learn ``LabelSpreading``, a callable kernel
  that returns that graph).

Every result is scored by Hungarian ACC against the labels. n = 0.1 %, 0.5 %, 1 % and 2 % of the
images; seeds change the random picks and the refine's seed. Prints a table (mean ± std) and saves
the curve as a PNG.

    python bench/bench_refine.py RUN_DIR [RUN_DIR ...] [--seeds 3] [--png bench/refine.png]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from scan_core.cli import main as cli
from scan_core.explore.curation import Curation
from scan_core.explore.results import RunResults
from scan_core.explore.review import review_queue, teaching_picks
from scan_core.method.graph import symmetric_graph
from scan_core.method.metrics import hungarian_accuracy

FRACTIONS = (0.001, 0.005, 0.01, 0.02)
METHODS = ("refine", "logistic regression", "label spreading")
PICKS = ("teach", "queue", "random")  # the Review page's "to teach" list (the app's picks), its queue, at random


def matched_clusters(clusters: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``(C,)`` the cluster matched to each class (Hungarian on the run's clusters)."""
    table = np.zeros((max(clusters.max(), labels.max()) + 1,) * 2)
    np.add.at(table, (clusters, labels), 1)
    rows, cols = linear_sum_assignment(-table)
    cluster_of = np.zeros(labels.max() + 1, dtype=np.int64)
    cluster_of[cols[cols <= labels.max()]] = rows[cols <= labels.max()]
    return cluster_of


def refine(run_dir: Path, picked: np.ndarray, targets: np.ndarray, seed: int, scratch: Path) -> np.ndarray:
    """The clusters after the app's refine, on a copy of ``run_dir`` with these labels."""
    copy = scratch / "run"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("curation.sqlite*", "checkpoints"))
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "seed": seed}))
    results = RunResults.load(copy)
    curation = Curation(copy, results.clusters, results.images.ids)
    same = targets == results.clusters[picked]
    if same.any():
        curation.accept(picked[same], targets[same])
    for cluster in np.unique(targets[~same]):
        curation.move(picked[~same & (targets == cluster)], int(cluster))
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        if cli(["refine", str(copy), "--quiet"]) != 0:
            raise RuntimeError(f"refine failed on {copy}: {printed.getvalue()}")
    return RunResults.load(copy).clusters


def logistic_regression(points: np.ndarray, picked: np.ndarray, targets: np.ndarray) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    scaler = StandardScaler().fit(points)
    if len(np.unique(targets)) < 2:
        return np.full(len(points), targets[0])
    model = LogisticRegression(max_iter=2000).fit(scaler.transform(points[picked]), targets)
    return model.predict(scaler.transform(points))


def label_spreading(neighbors: np.ndarray, picked: np.ndarray, targets: np.ndarray) -> np.ndarray:
    from sklearn.semi_supervised import LabelSpreading
    graph = symmetric_graph(neighbors)
    y = np.full(len(neighbors), -1)
    y[picked] = targets
    model = LabelSpreading(kernel=lambda a, b: graph, alpha=0.2, max_iter=100)
    model.fit(np.arange(len(neighbors))[:, None], y)
    return model.transduction_


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--png", type=Path, default=Path(__file__).with_name("refine.png"))
    args = parser.parse_args()
    table: dict[tuple, list[float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for run_dir in args.runs:
            results = RunResults.load(run_dir)
            labels, clusters = results.images.labels, results.clusters
            points = np.load(run_dir / "manifold.npy") if (run_dir / "manifold.npy").exists() else results.features
            queue = review_queue(results.probs, results.neighbor_lists(), clusters).order
            cluster_of = matched_clusters(clusters, labels)
            base = hungarian_accuracy(clusters, labels)
            for fraction in FRACTIONS:
                n = max(2, round(fraction * len(labels)))
                for seed in range(args.seeds):
                    for pick in PICKS:
                        rng = np.random.default_rng(seed)
                        picked = np.sort(teaching_picks(results.head_points(), n, seed=seed) if pick == "teach" else
                                         queue[:n] if pick == "queue" else rng.choice(len(labels), n, replace=False))
                        targets = cluster_of[labels[picked]]
                        started = time.time()
                        found = {"refine": refine(run_dir, picked, targets, seed, Path(scratch)),
                                 "logistic regression": logistic_regression(points, picked, targets),
                                 "label spreading": label_spreading(results.neighbors, picked, targets)}
                        for method, assignment in found.items():
                            table.setdefault((run_dir.name, fraction, n, pick, method), []).append(
                                hungarian_accuracy(assignment, labels))
                        print(f"  {run_dir.name} n={n} seed {seed} {pick}: " + ", ".join(
                            f"{m} {table[(run_dir.name, fraction, n, pick, m)][-1]:.4f}" for m in METHODS)
                            + f" ({time.time() - started:.0f} s)", file=sys.stderr, flush=True)
            table[(run_dir.name, 0.0, 0, "-", "run")] = [base]
    print("| run | labelled | picks | " + " | ".join(METHODS) + " |")
    print("|---|---|---|" + "---|" * len(METHODS))
    for run_name, fraction, n, pick in sorted({key[:4] for key in table if key[4] != "run"}):
        cells = [f"{np.mean(v):.4f} ± {np.std(v):.4f}" for v in (table[(run_name, fraction, n, pick, m)] for m in METHODS)]
        print(f"| {run_name} | {n:,} ({fraction:.1%}) | {pick} | " + " | ".join(cells) + " |")
    for key, value in table.items():
        if key[4] == "run":
            print(f"\n{key[0]}: the run's own result before any label, ACC {value[0]:.4f}")
    draw(table, args.png)
    print(f"curve: {args.png}")


def draw(table: dict, png: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    runs = sorted({key[0] for key in table})
    figure, axes = plt.subplots(1, len(runs), figsize=(6 * len(runs), 4), squeeze=False)
    for axis, run_name in zip(axes[0], runs):
        for method, colour in zip(METHODS, ("#E45756", "#4C78A8", "#54A24B")):
            for pick, style in (("teach", "-"), ("queue", ":"), ("random", "--")):
                keys = sorted(k for k in table if k[0] == run_name and k[3] == pick and k[4] == method)
                if keys:
                    means = [np.mean(table[k]) for k in keys]
                    axis.errorbar([k[2] for k in keys], means, yerr=[np.std(table[k]) for k in keys], color=colour,
                                  linestyle=style, marker="o", capsize=3, label=f"{method}, {pick} picks")
        base = [v[0] for k, v in table.items() if k[0] == run_name and k[4] == "run"]
        if base:
            axis.axhline(base[0], color="#999999", linestyle=":", label="the run, no labels")
        axis.set_xscale("log")
        sizes = sorted({key[2] for key in table if key[0] == run_name and key[4] != "run"})
        axis.set_xticks(sizes, [f"{n:,}" for n in sizes])
        axis.minorticks_off()
        axis.set_xlabel("images labelled")
        axis.set_ylabel("ACC")
        axis.set_title(run_name)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(png, dpi=110)


if __name__ == "__main__":
    main()
