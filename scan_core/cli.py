"""Command line: ``python -m scan_core train ...`` and ``python -m scan_core evaluate DIR [--on DATASET]``.

``train`` exits with 0 when the run finished, 2 when the request is refused before anything
starts (bad dataset, parameter or ``--out``: the message says which), 1 when a file cannot be
written (disk full ...), 130 on Ctrl-C (SIGINT) and 143 on SIGTERM; the last three leave a
resumable run (``status.json``: failed, interrupted, cancelled).
"""
from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from pathlib import Path

from .artifacts import load_json
from .presets import PRESETS

TRAINING_STAGES = ("pretext", "scan", "selflabel")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m scan_core",
                                     description="Classify images without labels with SCAN.")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="run (or resume) every stage on a dataset")
    train.add_argument("--dataset", required=True,
                       help="digits, fashion-mnist[:train|:test], cifar10, stl10, a folder or a .zip")
    train.add_argument("--clusters", type=int, default=None,
                       help="number of clusters K (default: the number of label folders)")
    train.add_argument("--out", required=True, type=Path, help="run directory")
    train.add_argument("--preset", default="auto", choices=PRESETS)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    train.add_argument("--backbone", default=None,
                       choices=("small-cnn", "resnet18-cifar", "resnet18-imagenet", "resnet50-imagenet"))
    train.add_argument("--image-size", type=int, default=None, help="working resolution (square)")
    for stage in TRAINING_STAGES:
        train.add_argument(f"--{stage}-epochs", type=int, default=None, metavar="E",
                           help=f"epochs of the {stage} stage (default: the preset's)")
    train.add_argument("--no-umap", action="store_true", help="skip the 2-D projection stage")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    evaluate = commands.add_parser("evaluate", help="print a run's metrics table")
    evaluate.add_argument("run_dir", type=Path)
    evaluate.add_argument("--on", metavar="DATASET", default=None,
                          help="score the run on other labelled images instead (e.g. fashion-mnist:test "
                               "for a run trained on fashion-mnist:train)")
    evaluate.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    return parser


def metrics_table(metrics: dict) -> str:
    """Plain-text table of the per-stage metrics of a run."""
    rows = ["stage       acc     nmi     ari     seconds  note"]
    for stage in ("pretext", "scan", "selflabel"):
        if stage not in metrics:
            continue
        m = metrics[stage]
        cell = lambda key: f"{m[key]:.4f}" if key in m else "   -  "  # noqa: E731
        note = f"head {m['head']}" if "head" in m else ""
        seconds = f"{m['seconds']:.1f}" if "seconds" in m else "-"
        rows.append(f"{stage:<11} {cell('acc')}  {cell('nmi')}  {cell('ari')}  {seconds:>7}  {note}")
    if "neighbors" in metrics and "purity" in metrics["neighbors"]:
        n = metrics["neighbors"]
        rows.append(f"neighbour purity (top-{n['k']}, {n['space']}): {n['purity']:.4f}")
    return "\n".join(rows)


@contextlib.contextmanager
def sigterm_cancels():
    """Within the block, SIGTERM raises :class:`~scan_core.run.Cancelled` (so a run killed with
    ``kill -TERM`` records ``cancelled``); the previous handler is restored afterwards."""
    from .run import Cancelled

    def cancel(signum, frame):
        raise Cancelled("cancelled by user")

    previous = signal.signal(signal.SIGTERM, cancel)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "evaluate":
        path = args.run_dir / "metrics.json"
        if not path.exists():
            print(f"error: {path} not found: is {args.run_dir} a run directory?", file=sys.stderr)
            return 2
        if args.on is None:
            print(metrics_table(load_json(path)))
            return 0
        from .inference import evaluate_on
        try:
            scores = evaluate_on(args.run_dir, args.on, args.device)
        except ValueError as error:  # SourceError included
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"scored on {args.on}, images the run did not train on")
        print(metrics_table(scores))
        return 0
    from .run import Cancelled, train_run
    overrides = {"seed": args.seed, "device": args.device}
    if args.backbone:
        overrides["backbone"] = args.backbone
    if args.image_size:
        overrides["image_size"] = args.image_size
    if args.no_umap:
        overrides["umap"] = False
    for stage in TRAINING_STAGES:
        if getattr(args, f"{stage}_epochs") is not None:
            overrides[stage] = {"epochs": getattr(args, f"{stage}_epochs")}
    resume = f"run the same command again (--out {args.out}) to resume"
    try:
        with sigterm_cancels():
            metrics = train_run(args.out, args.dataset, args.clusters, args.preset, show_bar=not args.quiet,
                                **overrides)
    except ValueError as error:  # SourceError included
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: {error}; {resume}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ninterrupted: {resume}", file=sys.stderr)
        return 130
    except Cancelled:
        print(f"cancelled: {resume}", file=sys.stderr)
        return 143
    print(metrics_table(metrics))
    skipped = load_json(args.out / "report.json")["skipped"]
    if skipped:
        print(f"skipped {skipped} files, see {args.out / 'report.json'}")
    return 0
