"""Curation at a million images: one edit of a large selection, and the curated state rebuilt from a
long log.

    python bench/bench_curation.py [--images 1000000] [--selection 100000] [--edits 1000]

A run of ``--images`` images in 20 clusters (no run directory needed: the curation log of a
temporary folder). Times, on the machine it runs on:

- a log of ``--edits`` edits (moves, labels, outliers, accepts of 1 to ``--selection`` images,
  log-uniform; names; merges and splits), whose last two are timed: one ``move`` and one
  ``relabel`` of ``--selection`` random images, each one edit (validated against the current state
  and committed) after a page read the state (as in the app);
- the state rebuilt from that log by a process that has none in memory (a new server, another
  session's process), and the state of a version half-way.

Prints one line ``images=N move_s=X relabel_s=Y rebuild_s=Z edits=E``.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from scan_core.explore import curation
from scan_core.explore.curation import Curation


def random_log(cur: Curation, edits: int, selection: int, seed: int = 0) -> None:
    """``edits`` edits of every kind, image selections of 1 to ``selection`` images (log-uniform)."""
    rng = np.random.default_rng(seed)
    n = cur.num_images
    for i in range(edits):
        size = int(np.exp(rng.uniform(0, np.log(selection))))
        images = rng.choice(n, size, replace=False)
        kind = rng.choice(["move", "relabel", "outlier", "accept", "name", "merge", "split"],
                          p=[0.35, 0.25, 0.1, 0.15, 0.05, 0.05, 0.05])
        state = cur.state()
        if kind == "move":
            cur.move(images, int(rng.integers(20)), who="bench")
        elif kind == "relabel":
            cur.relabel(images, f"label {rng.integers(50)}", who="bench")
        elif kind == "outlier":
            cur.mark_outliers(images, who="bench")
        elif kind == "accept":
            cur.accept(images, state.clusters[images], who="bench")
        elif kind == "name":
            cur.name_cluster(int(rng.integers(20)), f"name {i}", who="bench")
        else:
            sizes = state.cluster_sizes()
            full = np.flatnonzero(sizes > 1)
            source, target = rng.choice(full, 2, replace=False)
            if kind == "merge":
                cur.merge(int(source), int(target), who="bench")
            else:
                members = state.members(int(source))
                cur.split(int(source), members[:len(members) // 2], who="bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--selection", type=int, default=100_000)
    parser.add_argument("--edits", type=int, default=1000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    base = rng.integers(0, 20, args.images)
    print(f"{os.cpu_count()} cores; {args.images:,} images, selections of {args.selection:,}, a log of {args.edits:,} edits")
    with tempfile.TemporaryDirectory() as scratch:
        cur = Curation(Path(scratch), base)
        random_log(cur, args.edits - 2, args.selection)
        cur.state()  # what a page read before the user's edit
        picked = rng.choice(args.images, args.selection, replace=False)
        start = time.perf_counter()
        cur.move(picked, 3, who="bench")
        moved = time.perf_counter() - start
        start = time.perf_counter()
        cur.relabel(picked, "checked by hand", who="bench")
        relabelled = time.perf_counter() - start
        latest = cur.state()
        assert (latest.clusters[picked] == 3).all()
        getattr(curation, "_states", {}).clear()  # a process that holds no state in memory
        start = time.perf_counter()
        rebuilt = Curation(Path(scratch), base).state()
        rebuild = time.perf_counter() - start
        assert rebuilt.digest() == latest.digest() and rebuilt.version == args.edits
        start = time.perf_counter()
        Curation(Path(scratch), base).state_at(args.edits // 2)
        halfway = time.perf_counter() - start
        size_mb = (Path(scratch) / curation.DB_NAME).stat().st_size / 2 ** 20
    print("| images | move of the selection, s | relabel, s | rebuilt from the log, s | a version half-way, s | log, MB |")
    print("|---|---|---|---|---|---|")
    print(f"| {args.images:,} | {moved:.3f} | {relabelled:.3f} | {rebuild:.3f} | {halfway:.3f} | {size_mb:.0f} |")
    print(f"images={args.images} move_s={moved:.3f} relabel_s={relabelled:.3f} rebuild_s={rebuild:.3f} edits={args.edits}")


if __name__ == "__main__":
    main()
