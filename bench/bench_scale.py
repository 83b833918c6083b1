"""How the engine scales: neighbour mining on many points, exact against approximate.

    python bench/bench_scale.py index [--points 1000000] [--dim 128] [--k 20] [--queries 1000]

``index``: clustered synthetic points (Gaussian blobs around 1,000 random centres, L2-normalised;
uniform points make every approximate index look bad), every point's ``k`` nearest others mined
as a run mines them (:func:`scan_core.method.neighbors.mine_neighbors`: HNSW above the exact
limit), and recall@k against exact search on ``--queries`` sampled queries
(:func:`~scan_core.method.neighbors.search_recall`). Exact self-search of all points is timed on
those queries and scaled to N (it grows with N², about 50 minutes at 1M on 2 cores), unless
``--exact`` runs it whole. Prints one table row per size.
"""
from __future__ import annotations

import argparse
import os
import time

import faiss
import numpy as np

from scan_core.method.cosine import l2_normalize
from scan_core.method.neighbors import mine_neighbors, search_recall


def clustered(points: int, dim: int, centres: int = 1000, seed: int = 0) -> np.ndarray:
    """``(points, dim)`` float32 blobs around ``centres`` random centres, L2-normalised."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(centres, dim)).astype(np.float32) * 2
    out = np.empty((points, dim), dtype=np.float32)
    for start in range(0, points, 100_000):  # in chunks: the noise alone is 512 MB at 1M x 128
        stop = min(points, start + 100_000)
        out[start:stop] = means[rng.integers(0, centres, stop - start)] + rng.normal(size=(stop - start, dim))
    return l2_normalize(out)


def exact_seconds(points: np.ndarray, k: int, queries: int) -> float:
    """Seconds an exact self-search of every point would take, from ``queries`` of them."""
    index = faiss.IndexFlatIP(points.shape[1])
    index.add(points)
    start = time.perf_counter()
    index.search(points[:queries], k + 1)
    return (time.perf_counter() - start) * len(points) / queries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["index"])
    parser.add_argument("--points", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--exact", action="store_true", help="time the whole exact search instead of scaling it")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores, faiss {faiss.__version__}, {args.dim}-d, k = {args.k}")
    print("| points | approximate: build + search, s | recall@k (sampled) | exact self-search, s | fraction |")
    print("|---|---|---|---|---|")
    for n in args.points:
        points = clustered(n, args.dim)
        start = time.perf_counter()
        found = mine_neighbors(points, args.k, exact_limit=0)
        approximate = time.perf_counter() - start
        recall = search_recall(points, found, queries=args.queries)
        if args.exact:
            start = time.perf_counter()
            mine_neighbors(points, args.k, exact_limit=n)
            exact, how = time.perf_counter() - start, ""
        else:
            exact, how = exact_seconds(points, args.k, args.queries), " (scaled)"
        print(f"| {n:,} | {approximate:.1f} | {recall:.3f} | {exact:.0f}{how} | {approximate / exact:.2f} |", flush=True)


if __name__ == "__main__":
    main()
