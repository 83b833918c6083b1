"""A finished run directory of any size, written without training: what the app's benchmarks serve
(``bench/bench_app.py --images N``) and what its scale tests open.

    python bench/synthetic_run.py OUT --images 1000000 [--clusters 20] [--side 16] [--seed 0]

``N`` grayscale images of ``side`` px (a bright disc whose place and size follow its cluster, on
noise; written a shard at a time, as a folder's images are), in ``K`` clusters of uneven sizes, and
every artifact the pages read, as a real run writes it: the images' ids and true labels (the
cluster, 10% of them another class), 32-d features around each cluster's centre, 20 neighbours per
image (15 of its own cluster, 5 of others), the result's probabilities (confident mostly), a 2-D map
of Gaussian blobs, ``config.json``, ``metrics.json`` (the final stage) and ``status.json``. Memory
stays at a chunk of 50,000 rows apart from the arrays' own size.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from scan_core.config import RunConfig
from scan_core.data.artifacts import save_array, save_json
from scan_core.data.images import ImageSet
from scan_core.data.rundir import STAGE_NAMES
from scan_core.data.shards import ShardedArray, ShardWriter

CHUNK = 50_000
NEIGHBOURS = 20


def discs(clusters: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
    """``(B, side, side, 1)`` uint8: for each image a disc whose centre and radius follow its cluster."""
    k = clusters.astype(np.float32)
    cy = side * (0.3 + 0.4 * ((k * 0.37) % 1.0)) + rng.normal(0, 0.6, len(k))
    cx = side * (0.3 + 0.4 * ((k * 0.61) % 1.0)) + rng.normal(0, 0.6, len(k))
    radius = side * (0.12 + 0.12 * ((k * 0.23) % 1.0))
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    inside = ((yy[None] - cy[:, None, None]) ** 2 + (xx[None] - cx[:, None, None]) ** 2) < radius[:, None, None] ** 2
    pixels = 40 + 170 * inside + rng.normal(0, 20, inside.shape)
    return np.clip(pixels, 0, 255).astype(np.uint8)[..., None]


def write_run(run_dir: Path, images: int, clusters: int = 20, side: int = 16, seed: int = 0) -> Path:
    """Write the run (module docstring) into ``run_dir``; return it."""
    if images < clusters * NEIGHBOURS or clusters < 2:
        raise ValueError(f"need at least 2 clusters and {NEIGHBOURS} images a cluster, got {images} images "
                         f"in {clusters} clusters")
    run_dir = Path(run_dir)
    rng = np.random.default_rng(seed)
    sizes = rng.dirichlet(np.full(clusters, 3.0))
    assigned = np.sort(rng.choice(clusters, images, p=sizes))   # the images of a cluster side by side
    assigned = assigned[rng.permutation(images)]                   # then shuffled, as a folder would be
    order = np.argsort(assigned, kind="stable")
    first = np.searchsorted(assigned[order], np.arange(clusters))
    count = np.bincount(assigned, minlength=clusters)

    writer = ShardWriter(run_dir / "images", "images", (side, side, 1), np.uint8)
    centres = rng.normal(0, 1, (clusters, 32)).astype(np.float32)
    places = rng.uniform(-12, 12, (clusters, 2)).astype(np.float32)
    features = np.empty((images, 32), np.float32)
    neighbours = np.empty((images, NEIGHBOURS), np.int64)
    probs = np.empty((images, clusters), np.float32)
    projection = np.empty((images, 2), np.float32)
    for start in range(0, images, CHUNK):
        rows = slice(start, min(images, start + CHUNK))
        own = assigned[rows]
        writer.append(discs(own, side, rng))
        features[rows] = centres[own] + rng.normal(0, 0.6, (len(own), 32))
        same = order[first[own, None] + (rng.random((len(own), 15)) * count[own, None]).astype(np.int64)]
        neighbours[rows] = np.concatenate([same, rng.integers(0, images, (len(own), 5))], axis=1)
        logits = 4.0 * np.eye(clusters, dtype=np.float32)[own] + rng.normal(0, 1.2, (len(own), clusters))
        probs[rows] = np.exp(logits - logits.max(1, keepdims=True))
        probs[rows] /= probs[rows].sum(1, keepdims=True)
        projection[rows] = places[own] + rng.normal(0, 0.9, (len(own), 2))
    labels = np.where(rng.random(images) < 0.1, rng.integers(0, clusters, images), assigned)
    shards = ShardedArray.load(run_dir / "images", writer.close())
    ImageSet(f"synthetic-{images}", shards, np.array([f"img{i:07d}" for i in range(images)]),
             np.full(images, "", dtype=str), labels.astype(np.int64), [f"class {c}" for c in range(clusters)]
             ).save(run_dir / "images")
    for name, array in (("features.npy", features), ("neighbors.npy", neighbours), ("scan_probs.npy", probs),
                        ("projection.npy", projection)):
        save_array(run_dir / name, array)
    config = RunConfig(dataset=f"synthetic-{images}", num_clusters=clusters, preset="synthetic")
    save_json(run_dir / "config.json", config.to_dict())
    save_json(run_dir / "metrics.json", {"scan": {"seconds": 0.0},
                                         "final": {"stage": "scan", "why": "a synthetic run: no training"}})
    now = time.time()
    save_json(run_dir / "status.json", {"state": "finished", "stage": None, "error": None, "started": now,
                                        "updated": now, "pid": 0, "pid_start": None, "ranks": None,
                                        "completed": [s for s in STAGE_NAMES if s in ("images", "scan", "projection")]})
    return run_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--clusters", type=int, default=20)
    parser.add_argument("--side", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    write_run(args.out, args.images, args.clusters, args.side, args.seed)
    print(f"{args.images:,} images in {args.out} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
