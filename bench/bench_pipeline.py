"""Quality and time of every method on digits and Fashion-MNIST, mean +- std over seeds.

    python bench/bench_pipeline.py [--datasets digits fashion-mnist] [--seeds 3] [--out bench/out]
                                   [--protocol all|train-test] [--backbone B]

A dataset may be a labelled folder, e.g. the generated colour sets of ``bench/colour_sets.py``;
``--backbone`` runs the pipeline with that backbone instead of its preset's (``auto`` then trains
it with SimCLR unless it is pretrained).

Rows: k-means on pixels; UMAP(10-d, defaults) + k-means; the strongest simple peers (issue 12):
UMAP(n_neighbors=30, min_dist=0, 10-d) on 30-d whitened PCA + k-means, and HDBSCAN (scikit-learn,
min_cluster_size N/100, noise counted as one more cluster) on that UMAP; then the pipeline's own
stages: pretext + k-means (k-means on the run's features), the run's features centred + spherical
k-means, the run's features + UMAP(30, 0, 10-d) + k-means, UMAP to 50-d (30, 0) + Ward (Lowe et al.
2024) (the peers on the same backbone; for a run with the classifier's view, also on the backbone's
features alone, the peers a user gets from those features), k-means on the space the heads learn on (the run's manifold
when it has one, else its features: what SCAN must beat), SCAN, SCAN + self-label, and the run's
result (the stage its label-free rule kept). Columns: ACC (Hungarian) / NMI / ARI / seconds. Full runs use each dataset's preset.
A second table gives, per dataset and seed, the kept head's ACC against the best and the mean head's;
a third, the ACC of every candidate partition the scan stage scored (its heads and the standard
clusterings, :mod:`scan_core.method.candidates`), the one its label-free rule chose, and how often
that one is within 0.02 of the best (labels only report; they choose nothing).
``--protocol all`` (default) trains and scores on all images (Fashion-MNIST: all 70k);
``train-test`` is the published protocol: every method is fitted on the train split (60k) and
scored on the test split (10k) it never saw (k-means assigns to the nearest train centroid, UMAP
transforms, SCAN applies its kept head: ``scan_core.inference``).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from scan_core.data.images import ImageSet
from scan_core.data.sources import SPLITS, load_source
from scan_core.engine.inference import apply_run
from scan_core.engine.run import train_run
from scan_core.method.cosine import spherical_kmeans
from scan_core.method.metrics import evaluate

PEER = "UMAP(30, 0) on PCA + k-means"
HEAD_SPACE = "k-means on the heads' space"
FEATURE_UMAP = "features + UMAP(30, 0) + k-means"
CENTRED = "features centred + k-means"
WARD = "UMAP-50 + Ward"
BACKBONE_ALONE = "backbone features alone: "
METHODS = ("k-means on pixels", "UMAP + k-means", PEER, "HDBSCAN on that UMAP",
           *(f"{BACKBONE_ALONE}{method}" for method in (CENTRED, FEATURE_UMAP, WARD)), "pretext + k-means", CENTRED,
           FEATURE_UMAP, WARD, HEAD_SPACE, "SCAN", "SCAN + self-label", "result")


def kmeans_assign(train: np.ndarray, test: np.ndarray | None, k: int, seed: int) -> np.ndarray:
    """Spherical k-means fitted on ``train``; clusters of ``test`` (nearest centroid), else of ``train``."""
    clusters = spherical_kmeans(train, k, seed)
    if test is None:
        return clusters
    unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    centroids = unit(np.stack([unit(train)[clusters == c].mean(0) for c in range(k)]))
    return (unit(test) @ centroids.T).argmax(1)


def pixels(images: ImageSet) -> np.ndarray:
    return np.asarray(images.images).reshape(len(images), -1).astype(np.float32) / 255


def baselines(train: ImageSet, test: ImageSet | None, seed: int) -> dict[str, dict]:
    import umap
    scored, k = train if test is None else test, train.num_classes
    started = time.time()
    clusters = kmeans_assign(pixels(train), None if test is None else pixels(test), k, seed)
    rows = {"k-means on pixels": {**evaluate(clusters, scored.labels), "seconds": time.time() - started}}
    started = time.time()
    reducer = umap.UMAP(n_components=10, random_state=seed, min_dist=0.0)
    embedded = reducer.fit_transform(pixels(train))
    clusters = kmeans_assign(embedded, None if test is None else reducer.transform(pixels(test)), k, seed)
    rows["UMAP + k-means"] = {**evaluate(clusters, scored.labels), "seconds": time.time() - started}
    return {**rows, **strongest_peers(train, test, seed)}


def strongest_peers(train: ImageSet, test: ImageSet | None, seed: int) -> dict[str, dict]:
    """UMAP(n_neighbors=30, min_dist=0, 10-d) on 30-d whitened PCA, then k-means (Euclidean, 10
    starts) and, on all images only, HDBSCAN."""
    import umap
    from sklearn.cluster import HDBSCAN, KMeans
    from sklearn.decomposition import PCA
    scored, k = train if test is None else test, train.num_classes
    started = time.time()
    pca = PCA(30, whiten=True, random_state=seed).fit(pixels(train))
    reducer = umap.UMAP(n_neighbors=30, min_dist=0.0, n_components=10, random_state=seed)
    embedded = reducer.fit_transform(pca.transform(pixels(train)))
    scored_embedding = embedded if test is None else reducer.transform(pca.transform(pixels(test)))
    umap_seconds = time.time() - started
    kmeans = KMeans(k, n_init=10, random_state=seed).fit(embedded)
    rows = {PEER: {**evaluate(kmeans.predict(scored_embedding), scored.labels), "seconds": time.time() - started}}
    if test is None:
        started = time.time()
        found = HDBSCAN(min_cluster_size=max(10, len(train) // 100), min_samples=10).fit_predict(embedded)
        found = np.where(found < 0, found.max() + 1, found)  # noise: one more cluster
        rows["HDBSCAN on that UMAP"] = {**evaluate(found, scored.labels),
                                        "seconds": umap_seconds + time.time() - started}
    return rows


def scan_rows(spec: str, test: ImageSet | None, seed: int, out: Path, backbone: str | None = None) -> dict[str, dict]:
    name = Path(spec).name.replace(":", "-") + (f"-{backbone}" if backbone else "")
    run_dir = out / f"{name}-seed{seed}"
    metrics = train_run(run_dir, spec, preset="auto", seed=seed, show_bar=False, umap=False,
                        **({"backbone": backbone} if backbone else {}))
    if test is not None:  # score on the held-out split instead of the training images
        applied = apply_run(run_dir, test)
        k = test.num_classes
        clusters = {"pretext": kmeans_assign(np.load(run_dir / "features.npy"), applied.features, k, seed),
                    **{stage: probs.argmax(1) for stage, probs in applied.probs.items()}}
        metrics = {**metrics, **{stage: {**metrics[stage], **evaluate(found, test.labels)}
                                 for stage, found in clusters.items()}}
    total = 0.0
    rows = {} if test is not None else same_space_rows(run_dir, metrics, seed)
    for method, stage in (("pretext + k-means", "pretext"), ("SCAN", "scan"), ("SCAN + self-label", "selflabel")):
        before = ("manifold", "neighbors") if stage == "scan" else ()
        total += metrics[stage]["seconds"] + sum(metrics.get(s, {}).get("seconds", 0) for s in before)
        rows[method] = {**metrics[stage], "seconds": total}  # cumulative training time of the pipeline
    result = metrics.final.stage if metrics.final else "selflabel"
    rows["result"] = {**rows["SCAN" if result == "scan" else "SCAN + self-label"], "seconds": total, "stage": result}
    head_acc = metrics["scan"].get("head_acc")
    if head_acc and test is None:
        last = head_acc[-1]  # the heads at the last epoch; the kept one may come from an earlier snapshot
        rows["heads"] = {"kept": metrics["scan"]["acc"], "best": max(last), "mean": float(np.mean(last)),
                         "epoch": metrics["scan"]["head_epoch"]}
    if "candidates" in metrics["scan"] and test is None:
        rows["candidates"] = {"chosen": metrics["scan"]["chosen"],
                              "acc": {c["name"]: c["acc"] for c in metrics["scan"]["candidates"]}}
    return rows


def same_space_rows(run_dir: Path, metrics, seed: int) -> dict[str, dict]:
    """k-means on the space the run's heads learn on (its manifold stage's scores, else its pretext
    stage's), and the peers on the run's own features (:func:`feature_peers`); for a run with the
    classifier's view (``class_view``), the same peers on its backbone's features alone too."""
    from scan_core.config import RunConfig
    from scan_core.method.naming import imagenet_taxonomy
    labels = np.load(run_dir / "images" / "labels.npy")
    features = np.load(run_dir / "features.npy")
    space = "manifold" if "manifold" in metrics else "pretext"
    seconds = metrics["pretext"]["seconds"] + (metrics[space]["seconds"] if space == "manifold" else 0)
    rows = {HEAD_SPACE: {**metrics[space], "seconds": seconds}}
    rows.update(feature_peers(features, labels, seed, metrics["pretext"]["seconds"]))
    if RunConfig.load(run_dir).class_view:
        backbone_only = features[:, :features.shape[1] - imagenet_taxonomy().covers.shape[1]]
        rows.update({f"{BACKBONE_ALONE}{method}": row for method, row in
                     feature_peers(backbone_only, labels, seed, metrics["pretext"]["seconds"]).items()})
    return rows


def feature_peers(features: np.ndarray, labels: np.ndarray, seed: int, extracted: float) -> dict[str, dict]:
    """The standard clusterings of ``features`` ``(N, D)``: centred + spherical k-means, UMAP(30, 0,
    10-d) + k-means (10 starts), UMAP(30, 0, 50-d) + Ward; ``extracted``: the seconds the features took."""
    import umap
    from sklearn.cluster import AgglomerativeClustering, KMeans
    k = len(np.unique(labels))
    rows = {}
    started = time.time()
    found = spherical_kmeans(features - features.mean(0), k, seed)
    rows[CENTRED] = {**evaluate(found, labels), "seconds": extracted + time.time() - started}
    started = time.time()
    embedded = umap.UMAP(n_neighbors=30, min_dist=0.0, n_components=10, random_state=seed).fit_transform(features)
    found = KMeans(k, n_init=10, random_state=seed).fit_predict(embedded)
    rows[FEATURE_UMAP] = {**evaluate(found, labels), "seconds": extracted + time.time() - started}
    started = time.time()
    embedded = umap.UMAP(n_neighbors=30, min_dist=0.0, n_components=50, random_state=seed).fit_transform(features)
    found = AgglomerativeClustering(k, linkage="ward").fit_predict(embedded)
    rows[WARD] = {**evaluate(found, labels), "seconds": extracted + time.time() - started}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["digits", "fashion-mnist"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    parser.add_argument("--protocol", choices=("all", "train-test"), default="all")
    parser.add_argument("--backbone", default=None, help="instead of the preset's")
    args = parser.parse_args()
    split = args.protocol == "train-test"
    for dataset in args.datasets:
        if split and not {"train", "test"} <= set(SPLITS.get(dataset, ())):
            parser.error(f"--protocol train-test needs a dataset with train and test splits, not {dataset}")
    results: dict[tuple[str, str], list[dict]] = {}
    for dataset in args.datasets:
        spec = f"{dataset}:train" if split else dataset
        train, test = load_source(spec), load_source(f"{dataset}:test") if split else None
        for seed in range(args.seeds):
            for method, row in {**baselines(train, test, seed), **scan_rows(spec, test, seed, args.out, args.backbone)}.items():
                results.setdefault((dataset, method), []).append(row)
            print(f"{dataset} seed {seed} done", file=sys.stderr, flush=True)
    cell = lambda rows, key: f"{np.mean([r[key] for r in rows]):.3f} ± {np.std([r[key] for r in rows]):.3f}"
    print("| method | " + " | ".join(f"{Path(d).name} ACC | NMI | ARI | s" for d in args.datasets) + " |")
    print("|---|" + "---|---|---|---|" * len(args.datasets))
    for method in METHODS:
        cells = []
        for dataset in args.datasets:
            rows = results.get((dataset, method))
            cells += [cell(rows, "acc"), cell(rows, "nmi"), cell(rows, "ari"),
                      f"{np.mean([r['seconds'] for r in rows]):.0f}"] if rows else ["-"] * 4
        print(f"| {method} | " + " | ".join(cells) + " |")
    protocol = ("trained on the train split, scored on the test split" if split
                else "trained and scored on all images")
    print(f"\n{args.seeds} seeds, {protocol}; seconds are training time, those of the SCAN rows "
          "cumulative from the start of the pipeline (pretext, mining, heads); 2-core CPU unless stated.")
    print("result: the stage each seed's run kept: " + "; ".join(
        f"{Path(d).name}: {', '.join(r['stage'] for r in results[(d, 'result')])}" for d in args.datasets))
    print("\n| dataset | seed | kept head ACC (its epoch) | best head ACC | mean head ACC | kept within 0.01 |\n"
          "|---|---|---|---|---|---|")
    within = []
    for dataset in args.datasets:
        for seed, heads in enumerate(results.get((dataset, "heads"), [])):
            within.append(heads["best"] - heads["kept"] <= 0.01)
            print(f"| {Path(dataset).name} | {seed} | {heads['kept']:.3f} ({heads['epoch']}) | {heads['best']:.3f} | "
                  f"{heads['mean']:.3f} | {'yes' if within[-1] else 'no'} |")
    if within:
        print(f"kept head within 0.01 of the best head at the last epoch: {sum(within)} of {len(within)} runs")
    print_candidates(args.datasets, results)


def print_candidates(datasets: list[str], results: dict[tuple[str, str], list[dict]]) -> None:
    """Per dataset and seed: every candidate's ACC, the chosen one (*), and whether it is within
    0.02 of the best."""
    from scan_core.method.candidates import HEADS, PEERS
    names = (HEADS, *PEERS)
    print("\n| dataset | seed | " + " | ".join(names) + " | chosen within 0.02 of the best |\n|---|---|"
          + "---|" * (len(names) + 1))
    within = []
    for dataset in datasets:
        for seed, found in enumerate(results.get((dataset, "candidates"), [])):
            accs = found["acc"]
            within.append(max(accs.values()) - accs[found["chosen"]] <= 0.02)
            cells = [f"{accs[n]:.3f}{' *' if n == found['chosen'] else ''}" if n in accs else "-" for n in names]
            print(f"| {Path(dataset).name} | {seed} | " + " | ".join(cells) + f" | {'yes' if within[-1] else 'no'} |")
    if within:
        print(f"label-free choice within 0.02 of the best candidate: {sum(within)} of {len(within)} runs (* chosen)")


if __name__ == "__main__":
    main()
