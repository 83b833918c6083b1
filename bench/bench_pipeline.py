"""Quality and time of every method on digits and Fashion-MNIST, mean +- std over seeds.

    python bench/bench_pipeline.py [--datasets digits fashion-mnist] [--seeds 3] [--out bench/out]

Rows: k-means on pixels, UMAP(10-d) + k-means, pretext + k-means, SCAN, SCAN + self-label.
Columns: ACC (Hungarian) / NMI / ARI / seconds. Full runs use each dataset's preset, trained and
scored on all images (Fashion-MNIST: all 70k).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scan_core.metrics import evaluate  # noqa: E402
from scan_core.run import kmeans, train_run  # noqa: E402
from scan_core.sources import load_source  # noqa: E402

METHODS = ("k-means on pixels", "UMAP + k-means", "pretext + k-means", "SCAN", "SCAN + self-label")


def baselines(dataset: str, seed: int) -> dict[str, dict]:
    import umap
    images = load_source(dataset)
    pixels = images.images.reshape(len(images), -1).astype(np.float32) / 255
    k = images.num_classes
    started = time.time()
    rows = {"k-means on pixels": {**evaluate(kmeans(pixels, k, seed), images.labels),
                                  "seconds": time.time() - started}}
    started = time.time()
    embedded = umap.UMAP(n_components=10, random_state=seed, min_dist=0.0).fit_transform(pixels)
    rows["UMAP + k-means"] = {**evaluate(kmeans(embedded, k, seed), images.labels), "seconds": time.time() - started}
    return rows


def scan_rows(dataset: str, seed: int, out: Path) -> dict[str, dict]:
    metrics = train_run(out / f"{dataset}-seed{seed}", dataset, preset="auto", seed=seed, show_bar=False,
                        umap=False)
    total = 0.0
    rows = {}
    for method, stage in (("pretext + k-means", "pretext"), ("SCAN", "scan"), ("SCAN + self-label", "selflabel")):
        total += metrics[stage]["seconds"] + (metrics["neighbors"]["seconds"] if stage == "scan" else 0)
        rows[method] = {**metrics[stage], "seconds": total}  # cumulative time of the pipeline
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["digits", "fashion-mnist"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    args = parser.parse_args()
    results: dict[tuple[str, str], list[dict]] = {}
    for dataset in args.datasets:
        for seed in range(args.seeds):
            for method, row in {**baselines(dataset, seed), **scan_rows(dataset, seed, args.out)}.items():
                results.setdefault((dataset, method), []).append(row)
    cell = lambda rows, key: f"{np.mean([r[key] for r in rows]):.3f} ± {np.std([r[key] for r in rows]):.3f}"  # noqa: E731
    print(f"| method | " + " | ".join(f"{d} ACC | NMI | ARI | s" for d in args.datasets) + " |")
    print("|---|" + "---|---|---|---|" * len(args.datasets))
    for method in METHODS:
        cells = []
        for dataset in args.datasets:
            rows = results[(dataset, method)]
            cells += [cell(rows, "acc"), cell(rows, "nmi"), cell(rows, "ari"),
                      f"{np.mean([r['seconds'] for r in rows]):.0f}"]
        print(f"| {method} | " + " | ".join(cells) + " |")
    print(f"\n{args.seeds} seeds; seconds of SCAN rows are cumulative from the start of the pipeline "
          "(pretext, mining, heads); 2-core CPU unless stated.")


if __name__ == "__main__":
    main()
