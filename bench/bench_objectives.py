"""The heads' objectives against the standard clusterings of the same frozen features, in one table.

    python bench/bench_objectives.py FOLDER [FOLDER ...] [--seeds 3] [--out bench/out/objectives]

For each labelled folder (e.g. the clip-art sets of ``bench/stamp_sets.py``) the product's ``auto``
run extracts the features once (seed 0: its backbone, feature banks and mined neighbours; its own
heads are trained for one epoch only); then, for every seed, on those same features:

- features centred + k-means (spherical, on the features less their mean);
- features + UMAP(n_neighbors 30, min_dist 0, 10-d) + k-means (10 starts);
- UMAP to 50-d (30, 0) + Ward (Lowe et al. 2024);
- k-means on the heads' input space (what the pretext stage scores);
- SCAN heads and TEMI heads: the product's scan stage (:mod:`scan_core.engine.stages.scan`) with the
  ``auto`` preset's heads (:data:`scan_core.presets.SCAN_HEADS`) and ``scan.loss`` ``scan`` or ``temi``:
  the head it keeps and the consensus of its heads, chosen without labels.

Cells: Hungarian ACC and NMI, mean ± std over the seeds. Labels only score.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from scan_core.config import SCAN_LOSSES, ScanConfig
from scan_core.data.artifacts import load_array
from scan_core.data.images import ImageSet
from scan_core.engine.context import RunContext
from scan_core.engine.progress import Progress
from scan_core.engine.run import train_run
from scan_core.engine.stages import scan as scan_stage
from scan_core.method.cosine import spherical_kmeans
from scan_core.method.metrics import evaluate
from scan_core.presets import SCAN_HEADS

PEERS = ("features centred + k-means", "features + UMAP(30, 0) + k-means", "UMAP-50 + Ward", "k-means on the heads' input")
METHODS = (*PEERS, *(f"{loss.upper()} heads" for loss in SCAN_LOSSES))


def extracted(folder: Path, out: Path) -> RunContext:
    """The ``auto`` run of ``folder`` in ``out`` (made once, heads and self-labeling for one epoch) as
    a context its scan stage can run again on."""
    run_dir = out / folder.name
    train_run(run_dir, str(folder), show_bar=False, umap=False, seed=0, scan={"epochs": 1}, selflabel={"epochs": 1})
    ctx = scan_stage_context(run_dir)
    if ctx.images.labels is None:
        raise SystemExit(f"{folder}: no label folders to score with")
    return ctx


def scan_stage_context(run_dir: Path) -> RunContext:
    from scan_core.config import RunConfig
    manifold = run_dir / "manifold.npy"
    return RunContext(run_dir, RunConfig.load(run_dir), torch.device("cpu"),
                      Progress(Path(tempfile.mkdtemp()), show_bar=False), images=ImageSet.load(run_dir / "images"),
                      features=load_array(run_dir / "features.npy"),
                      manifold=load_array(manifold) if manifold.exists() else None,
                      neighbors=load_array(run_dir / "neighbors.npy"))


def peers(ctx: RunContext, seed: int) -> dict[str, np.ndarray]:
    """Every peer's clusters ``(N,)`` of the run's features."""
    import umap
    from sklearn.cluster import AgglomerativeClustering, KMeans
    features, k = np.asarray(ctx.features, np.float32), ctx.config.num_clusters
    found = {PEERS[0]: spherical_kmeans(features - features.mean(0), k, seed)}
    embedded = umap.UMAP(n_neighbors=30, min_dist=0.0, n_components=10, random_state=seed).fit_transform(features)
    found[PEERS[1]] = KMeans(k, n_init=10, random_state=seed).fit_predict(embedded)
    embedded = umap.UMAP(n_neighbors=30, min_dist=0.0, n_components=50, random_state=seed).fit_transform(features)
    found[PEERS[2]] = AgglomerativeClustering(k, linkage="ward").fit_predict(embedded)
    found[PEERS[3]] = spherical_kmeans(np.asarray(ctx.head_features), k, seed)
    return found


def heads(ctx: RunContext, loss: str, seed: int) -> np.ndarray:
    """The clusters ``(N,)`` the scan stage gives with the ``auto`` heads trained with ``loss``."""
    config = replace(ctx.config, seed=seed, scan=ScanConfig(**{**SCAN_HEADS, "loss": loss}))
    run = replace(ctx, config=config, started=time.time())
    (ctx.dir / "checkpoints" / "scan.pt").unlink(missing_ok=True)  # never resume another training
    torch.manual_seed(seed)
    scan_stage.run(run)
    (ctx.dir / "checkpoints" / "scan.pt").unlink(missing_ok=True)
    return run.probs.argmax(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/out/objectives"))
    args = parser.parse_args()
    scores: dict[tuple[str, str], list[dict]] = {}
    for folder in args.folders:
        ctx = extracted(folder, args.out)
        for seed in range(args.seeds):
            found = peers(ctx, seed)
            for loss in SCAN_LOSSES:
                started = time.time()
                found[f"{loss.upper()} heads"] = heads(ctx, loss, seed)
                print(f"{folder.name} seed {seed} {loss}: {time.time() - started:.0f} s", file=sys.stderr, flush=True)
            for method, clusters in found.items():
                scores.setdefault((folder.name, method), []).append(evaluate(clusters, ctx.images.labels))
        table(scores, [f.name for f in args.folders[:args.folders.index(folder) + 1]], args.seeds)


def table(scores: dict[tuple[str, str], list[dict]], names: list[str], seeds: int) -> None:
    """Print the table of the folders ``names`` (printed again as each folder is done)."""
    cell = lambda rows, key: f"{np.mean([r[key] for r in rows]):.3f} ± {np.std([r[key] for r in rows]):.3f}"
    print("| method | " + " | ".join(f"{name} ACC | NMI" for name in names) + " |\n|---|" + "---|---|" * len(names))
    for method in METHODS:
        print(f"| {method} | " + " | ".join(f"{cell(scores[(name, method)], 'acc')} | {cell(scores[(name, method)], 'nmi')}"
                                             for name in names) + " |")
    print(f"\n{seeds} seeds; features extracted once per folder by the auto preset (seed 0).\n", flush=True)


if __name__ == "__main__":
    main()
