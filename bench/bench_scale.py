"""How the engine scales: neighbour mining on many points, exact against approximate; one process
against several torchrun ranks.

    python bench/bench_scale.py index [--points 1000000] [--dim 128] [--k 20] [--queries 1000] [--links 48]
                                      [--index-memory MB]
    python bench/bench_scale.py ranks [--datasets digits] [--ranks 1 2] [--seeds 3] [--first-seed 0]
    python bench/bench_scale.py growth [--sizes 7000 70000 700000] [--work DIR]

``index``: clustered synthetic points (Gaussian blobs around 1,000 random centres, L2-normalised;
uniform points make every approximate index look bad), every point's ``k`` nearest others mined
as a run mines them (:func:`scan_core.method.neighbors.mine_neighbors`: an HNSW graph while it fits
in ``--index-memory``, else inverted lists on disk, in ``--work``), the private memory mining took
(``RssAnon``, sampled, above what the process held before), and recall@k against exact search on
``--queries`` sampled queries (:func:`~scan_core.method.neighbors.search_recall`). Exact self-search of all points is timed on
those queries and scaled to N (it grows with N², about 50 minutes at 1M on 2 cores), unless
``--exact`` runs it whole. Prints one table row per size.

``ranks``: the ``train`` command as a user types it (the dataset's default preset), in one process
and under ``torchrun --standalone --nproc-per-node R`` with gloo ranks, for each seed: the result's
ACC and the wall time (startup included), mean ± std over the seeds, one row per dataset and R.

``growth``: Fashion-MNIST tiled to each size as a folder of PNGs in label folders (image ``i`` is
original ``i mod 70,000`` shifted by up to 2 pixels, cropped back to 28 and given Gaussian noise of
8 grey levels, seeded by ``i``, so that no two are equal), then ``train --dataset FOLDER`` as a user
types it (``auto``), in a fresh process: seconds per image of every stage, the peak private memory
(``RssAnon``) of that process in every stage and its peak resident memory (``VmHWM``, which counts
the pages of the memory-mapped arrays it has read too), its decoding workers apart. One row per size.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import faiss
import numpy as np

from scan_core.config import INDEX_MEMORY
from scan_core.data.artifacts import load_json
from scan_core.explore.jobs import launcher
from scan_core.method.cosine import l2_normalize
from scan_core.method.neighbors import HNSW_LINKS, mine_neighbors, search_kind, search_recall


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


class MemoryPeak:
    """The most private memory (``RssAnon``) this process held, in MB above what it held when the
    block began, sampled every ``every`` seconds by a thread."""

    def __init__(self, every: float = 0.05):
        self.every, self.peak, self.before = every, 0.0, 0.0
        self._done = threading.Event()

    def __enter__(self) -> MemoryPeak:
        self.before = process_memory(os.getpid()).get("RssAnon", 0.0)
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._done.wait(self.every):
            self.peak = max(self.peak, process_memory(os.getpid()).get("RssAnon", 0.0) - self.before)

    def __exit__(self, *_) -> None:
        self._done.set()
        self._thread.join()


def index(args: argparse.Namespace) -> None:
    """The ``index`` table (module docstring)."""
    memory = int(args.index_memory * 1024 ** 2)
    print(f"{os.cpu_count()} cores, faiss {faiss.__version__}, {args.dim}-d, k = {args.k}, HNSW M = {args.links}, "
          f"index memory {args.index_memory:g} MB")
    print("| points | index | approximate: build + search, s | mining's private memory, MB | recall@k (sampled) "
          "| exact self-search, s | fraction |")
    print("|---|---|---|---|---|---|---|")
    for n in args.points:
        points = clustered(n, args.dim)
        start = time.perf_counter()
        with MemoryPeak() as mining, tempfile.TemporaryDirectory(dir=args.work) as scratch:
            found = mine_neighbors(points, args.k, exact_limit=0, links=args.links, memory=memory, scratch=Path(scratch))
        approximate = time.perf_counter() - start
        recall = search_recall(points, found, queries=args.queries)
        if args.exact:
            start = time.perf_counter()
            mine_neighbors(points, args.k, exact_limit=n)
            exact, how = time.perf_counter() - start, ""
        else:
            exact, how = exact_seconds(points, args.k, args.queries), " (scaled)"
        kind = search_kind(n, 0, dim=args.dim, memory=memory, links=args.links)
        print(f"| {n:,} | {kind} | {approximate:.1f} | {mining.peak:.0f} | {recall:.3f} | {exact:.0f}{how} "
              f"| {approximate / exact:.2f} |", flush=True)


def trained(dataset: str, ranks: int, seed: int, out: Path) -> tuple[float, float]:
    """``(ACC of the result, wall seconds)`` of one ``train`` on ``ranks`` processes."""
    start = time.perf_counter()
    subprocess.run([*launcher(ranks), "train", "--dataset", dataset, "--out", str(out), "--seed", str(seed), "--quiet"],
                   check=True, capture_output=True)
    seconds = time.perf_counter() - start
    metrics = load_json(out / "metrics.json")
    return metrics[metrics["final"]["stage"]]["acc"], seconds


def ranks(args: argparse.Namespace) -> None:
    """The ``ranks`` table (module docstring)."""
    print(f"{os.cpu_count()} cores; seeds {args.first_seed} to {args.first_seed + args.seeds - 1}; "
          "the default preset of each dataset")
    print("| dataset | processes | ACC | wall time, s |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        for dataset in args.datasets:
            for count in args.ranks:
                runs = np.array([trained(dataset, count, seed, Path(scratch) / f"{Path(dataset).name}-{count}-{seed}")
                                 for seed in range(args.first_seed, args.first_seed + args.seeds)])
                print(f"| {dataset} | {count} | {runs[:, 0].mean():.3f} ± {runs[:, 0].std():.3f} "
                      f"| {runs[:, 1].mean():.0f} ± {runs[:, 1].std():.0f} |", flush=True)


def tiled_fashion(folder: Path, size: int) -> None:
    """Write ``size`` perturbed Fashion-MNIST images into ``folder/<class>/<i>.png`` (module docstring)."""
    from PIL import Image

    from scan_core.data.sources import load_source
    fashion = load_source("fashion-mnist")
    for name in fashion.class_names:
        (folder / name).mkdir(parents=True, exist_ok=True)
    for i in range(size):
        rng = np.random.default_rng(i)
        original = fashion.images[i % len(fashion), ..., 0].astype(np.float32)
        dy, dx = rng.integers(-2, 3, 2)
        shifted = np.roll(np.pad(original, 2, mode="edge"), (dy, dx), axis=(0, 1))[2:-2, 2:-2]
        noisy = np.clip(shifted + rng.normal(0, 8, shifted.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(folder / fashion.class_names[fashion.labels[i % len(fashion)]] / f"{i:07d}.png")


GROWTH_RUN = """
import json, sys
from scan_core.engine.run import train_run
metrics = train_run(sys.argv[1], sys.argv[2], show_bar=False)
print(json.dumps({"acc": metrics[metrics.final.stage].get("acc")}))
"""
MEMORY_FIELDS = ("VmRSS", "RssAnon", "RssFile", "VmHWM")  # /proc/PID/status, kB


def process_memory(pid: int) -> dict[str, float]:
    """The memory of process ``pid`` now, in MB: ``VmRSS`` (resident), ``RssAnon`` (its private
    memory), ``RssFile`` (pages of mapped files, which the kernel can drop and read again) and
    ``VmHWM`` (the highest resident so far); empty once it has ended."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    values = dict(line.split(":", 1) for line in lines if ":" in line)
    return {name: int(values[name].split()[0]) / 1024 for name in MEMORY_FIELDS if name in values}


def watched(command: list[str], run_dir: Path, every: float = 0.2) -> tuple[str, dict[str, dict[str, float]]]:
    """Run ``command`` to its end, sampling its memory every ``every`` seconds: its stdout and the
    peak of each :data:`MEMORY_FIELDS` per stage (``status.json``'s stage; "reading" before the first)."""
    from scan_core.data.artifacts import read_json
    peaks: dict[str, dict[str, float]] = {}
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as child:
        while child.poll() is None:
            memory = process_memory(child.pid)
            stage = read_json(run_dir / "status.json").get("stage") or "reading"
            for name, value in memory.items():
                peaks.setdefault(stage, {})[name] = max(value, peaks.get(stage, {}).get(name, 0.0))
            time.sleep(every)
        output = child.stdout.read() if child.stdout else ""
        if child.returncode:
            raise subprocess.CalledProcessError(child.returncode, command, output)
    return output, peaks


def growth(args: argparse.Namespace) -> None:
    """The ``growth`` table (module docstring)."""
    from scan_core.data.rundir import STAGE_NAMES
    print(f"{os.cpu_count()} cores; train --dataset FOLDER (auto); seconds per image of each stage, in ms; "
          "memory of the training process in MB: private (RssAnon) peak per stage, resident peak (VmHWM)")
    print("| images | wall time, s | ms / image | ms / image, by stage | private MB, by stage | peak RSS, MB | ACC |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(dir=args.work) as scratch:
        for size in args.sizes:
            folder, run_dir = Path(scratch) / f"fashion-{size}", Path(scratch) / f"run-{size}"
            tiled_fashion(folder, size)
            start = time.perf_counter()
            output, peaks = watched([sys.executable, "-c", GROWTH_RUN, str(run_dir), str(folder)], run_dir)
            wall = time.perf_counter() - start
            result = json.loads(output.strip().splitlines()[-1])
            metrics = load_json(run_dir / "metrics.json")
            stages = {name: metrics[name]["seconds"] for name in STAGE_NAMES if name in metrics and "seconds" in metrics[name]}
            reading = wall - sum(stages.values())  # start-up and decoding, before the first stage
            per_image = " ".join(f"{name} {1000 * seconds / size:.2f}" for name, seconds in
                                 {"reading": reading, **stages}.items())
            private = " ".join(f"{stage} {peak.get('RssAnon', 0):.0f}" for stage, peak in peaks.items())
            resident = max(peak.get("VmHWM", 0) for peak in peaks.values())
            print(f"| {size:,} | {wall:.0f} | {1000 * wall / size:.2f} | {per_image} | {private} | {resident:.0f} "
                  f"| {result['acc']:.3f} |", flush=True)
            shutil.rmtree(folder)
            shutil.rmtree(run_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["index", "ranks", "growth"])
    parser.add_argument("--points", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--links", type=int, default=HNSW_LINKS, help="HNSW's M (links a point)")
    parser.add_argument("--exact", action="store_true", help="time the whole exact search instead of scaling it")
    parser.add_argument("--index-memory", type=float, default=INDEX_MEMORY / 1024 ** 2, metavar="MB",
                        help="the most memory an HNSW graph may take; past it the lists go to disk")
    parser.add_argument("--datasets", nargs="+", default=["digits"])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds run: this one and the next --seeds - 1")
    parser.add_argument("--sizes", type=int, nargs="+", default=[7_000, 70_000, 700_000])
    parser.add_argument("--work", type=Path, default=None,
                        help="where the tiled folders, the runs and on-disk index lists go (a temporary folder)")
    args = parser.parse_args()
    {"index": index, "ranks": ranks, "growth": growth}[args.what](args)


if __name__ == "__main__":
    main()
