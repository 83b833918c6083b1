"""The chance warning and the calibrated confidence (scan_core.method.confidence) on good and bad runs
of both routes: heads on a frozen backbone's features (colour images) and heads on the HOG's UMAP
manifold (grayscale).

    python bench/bench_trust.py folders OUT      # write the folders below into OUT
    for f in OUT/*; do python -m scan_core train --dataset $f --out runs/$(basename $f) --quiet; done
    python bench/bench_trust.py score runs/*      # the table

The folders: ``noise-gray`` and ``noise-colour`` (600 images of smoothed uniform noise, five made-up
classes: structure-free, so any clusters are chance) and, where Debian's ``tuxpaint-stamps-default``
is installed, ``stamps-5`` and ``stamps-9`` (clip art in 5 and 9 of its semantic folders, up to 40 and
80 images each). Add any labelled runs (digits, Fashion-MNIST, ``bench/colour_sets.py``).

For each run: the route, ACC, the raw and the calibrated mean top probability, the share of mined
neighbour pairs in one cluster, the kept head's agreement with the other candidate heads (mean ARI),
the clusters' chance-corrected agreement with the features' own 20 nearest (the lift), and whether
the old rule (mean raw top probability < 0.6 or neighbour agreement < 0.5) and the current one
(:func:`scan_core.method.confidence.chance_warning`) warn.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from scan_core.method.confidence import chance_warning, feature_lift, neighbour_temperature, tempered
from scan_core.method.metrics import hungarian_accuracy

STAMPS = Path("/usr/share/tuxpaint/stamps")
STAMP_SETS = {"stamps-5": (("animals", "food", "vehicles", "plants", "town"), 40),
              "stamps-9": (("animals", "food", "vehicles", "plants", "town", "household", "seasonal", "symbols",
                            "clothes"), 80)}


def write_folders(out: Path) -> None:
    for name, mode in (("noise-gray", "L"), ("noise-colour", "RGB")):
        rng = np.random.default_rng(0)
        for i in range(600):
            folder = out / name / f"c{i % 5}"
            folder.mkdir(parents=True, exist_ok=True)
            shape = (16, 16) if mode == "L" else (16, 16, 3)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).resize((64, 64), Image.BICUBIC).save(
                folder / f"{i:04d}.png")
    if not STAMPS.is_dir():
        print(f"{STAMPS} is missing (apt-get install tuxpaint-stamps-default): no stamps folders")
        return
    for name, (classes, count) in STAMP_SETS.items():
        rng = random.Random(0)
        for cls in classes:
            files = sorted(p for p in (STAMPS / cls).rglob("*.png") if "thumb" not in p.name)
            rng.shuffle(files)
            (out / name / cls).mkdir(parents=True, exist_ok=True)
            for i, path in enumerate(files[:count]):
                shutil.copy(path, out / name / cls / f"{i:03d}-{path.name}")


def score(runs: list[Path]) -> None:
    print("| run | route | ACC | raw confidence | calibrated | neighbour agreement | head agreement (ARI) "
          "| feature lift | old rule warns | warns |\n|---|---|---|---|---|---|---|---|---|---|")
    for run_dir in runs:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        config = json.loads((run_dir / "config.json").read_text())
        stage = metrics["final"]["stage"]
        probs = np.load(run_dir / f"{stage}_probs.npy")
        neighbors = np.load(run_dir / "neighbors.npy")
        clusters = probs.argmax(1)
        agreement = float((clusters[neighbors] == clusters[:, None]).mean())
        calibrated = tempered(probs, neighbour_temperature(probs, neighbors)).max(1).mean()
        scan = metrics["scan"]
        heads = scan["head_agreement"][scan["snapshot_epochs"].index(scan["head_epoch"])][scan["head"]]
        own = run_dir / "feature_neighbors.npy"
        lift = feature_lift(clusters, np.load(own) if own.exists() else neighbors)
        warns = chance_warning(heads, lift, probs.shape[1]) is not None
        labels = run_dir / "images" / "labels.npy"
        acc = hungarian_accuracy(clusters, np.load(labels)) if labels.exists() else float("nan")
        route = "manifold" if config.get("manifold_dims") else config.get("backbone")
        old = probs.max(1).mean() < 0.6 or agreement < 0.5
        print(f"| {run_dir.name} | {route} | {acc:.3f} | {probs.max(1).mean():.2f} | {calibrated:.2f} | {agreement:.3f} "
              f"| {heads:.3f} | {lift:.3f} | {'yes' if old else 'no'} | {'yes' if warns else 'no'} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("folders").add_argument("out", type=Path)
    commands.add_parser("score").add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    if args.command == "folders":
        write_folders(args.out)
    else:
        score(args.runs)


if __name__ == "__main__":
    main()
