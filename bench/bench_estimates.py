"""How far the app's whole-run time estimate is from the truth, over each run's timeline.

Trains real runs the way the app starts them (:func:`scan_core.explore.jobs.start` in a workspace
of its own): the digits demo (the demo button: digits preset, K 10), then a folder of 300 colour
clip-art images in 5 label folders (Tux Paint stamps, ``bench/stamp_sets.py``; the generated colour
shapes of ``bench/colour_sets.py`` when the stamps are not installed) with ``auto`` settings and the
5-minute budget, and the same images without their folders (K suggested). Each run keeps its
``events.jsonl`` and ``metrics.json``.

Then replays them: every ``--every`` seconds of a run's timeline (from the job's launch) it calls
the estimate the progress card shows (:func:`scan_core.explore.estimates.remaining`) with the
events written up to then, and prints the seconds really left, the estimate, and the relative
error |estimate - left| / left; the summary gives the largest error from the first minute on (while 30 s or more are left) and
the estimate before Start (:func:`~scan_core.explore.estimates.expected_seconds`) against the run's
whole time. Each run is replayed twice: as a workspace's first run (no calibration) and calibrated
on the bench's other runs (as when they finished before it).

    python bench/bench_estimates.py [--out bench/out/estimates] [--reuse] [--every 10]

``--reuse``: replay the runs already trained under ``--out`` (trains those missing).
"""
from __future__ import annotations

import argparse
import random
import shutil
import sys
import time
from pathlib import Path

from scan_core.config import RunConfig
from scan_core.data.artifacts import read_json
from scan_core.data.run_metrics import RunMetrics
from scan_core.data.rundir import RunState, RunStatus, read_events
from scan_core.explore import estimates, jobs
from scan_core.explore.workspace import Workspace

sys.path.insert(0, str(Path(__file__).parent))
from colour_sets import make_folder
from stamp_sets import STAMPS, make_set

FOLDERS, PER_FOLDER = 5, 60   # the colour run: 300 images in 5 label folders
FIRST_MINUTE = 60.0
LAST_SECONDS = 30.0   # errors are counted while this much or more is left: in the last seconds any error is a large share


def colour_folder(data: Path) -> Path:
    """``data/colour``: :data:`PER_FOLDER` images from each of :data:`FOLDERS` stamp topics (or
    generated shapes and textures), and ``data/colour-flat``: the same images without folders."""
    labelled, flat = data / "colour", data / "colour-flat"
    if labelled.exists() and flat.exists():
        return labelled
    shutil.rmtree(labelled, ignore_errors=True)
    shutil.rmtree(flat, ignore_errors=True)
    if STAMPS.is_dir():
        topics = make_set(data / "stamps", "topics")
        groups = [group for group in sorted(topics.iterdir()) if len(list(group.iterdir())) >= PER_FOLDER][:FOLDERS]
    else:
        groups = [make_folder(data / "generated", kind, images=PER_FOLDER * 4, size=96)
                  for kind in ("shapes", "textures")]
        groups = [group for root in groups for group in sorted(root.iterdir())][:FOLDERS]
    flat.mkdir(parents=True)
    for group in groups:
        files = sorted(group.iterdir())
        random.Random(0).shuffle(files)
        (labelled / group.name).mkdir(parents=True)
        for path in files[:PER_FOLDER]:
            shutil.copyfile(path, labelled / group.name / path.name)
            shutil.copyfile(path, flat / f"{group.name}-{path.name}")
    return labelled


def train(ws: Workspace, name: str, spec: str, clusters: int | str, preset: str, budget: float | None) -> Path:
    """Start the run as the app does (once the run before has let the workspace's training lock go:
    it writes its status before its process ends) and wait for its end; its directory."""
    for _ in range(60):
        try:
            run_dir = jobs.start(ws, spec, clusters, name=name, preset=preset, time_budget=budget)
            break
        except jobs.JobBusy:
            time.sleep(1)
    else:
        raise SystemExit(f"{name}: the workspace's training lock stayed held for a minute")
    while jobs.job_state(ws, run_dir).state in ("starting", "running"):
        time.sleep(2)
    state = jobs.job_state(ws, run_dir).state
    if state != "finished":
        raise SystemExit(f"{name}: {state} (see {run_dir / 'train.log'})")
    return run_dir


def replay(run_dir: Path, calibration: estimates.Calibration, every: float) -> list[tuple[float, float, float | None]]:
    """``(t, seconds really left, estimate or None)`` every ``every`` seconds from the launch."""
    events = read_events(run_dir)
    launched = read_json(run_dir / "job.json")["launched"]
    end = max(e["time"] for e in events if e["kind"] == "stage_end")
    rows = []
    for t in [every * i for i in range(1, int((end - launched) / every) + 1)]:
        now = launched + t
        known = [e for e in events if e["time"] <= now]
        started = [e["stage"] for e in known if e["kind"] == "stage_start"]
        completed = [e["stage"] for e in known if e["kind"] == "stage_end"]
        left = None
        if started and started[-1] != "images":   # the card shows no estimate before the images are in
            state = RunStatus(RunState.RUNNING, started[-1], tuple(completed))
            left = estimates.remaining(run_dir, state, known, calibration, now=now).seconds
        rows.append((t, end - now, left))
    return rows


def expected_error(run_dir: Path, calibration: estimates.Calibration) -> tuple[float, float]:
    """``(estimate before Start, the run's whole time)`` in seconds."""
    images = RunMetrics.load(run_dir).stage("images")
    expected = estimates.expected_seconds(RunConfig.load(run_dir), images["count"], images["height"], calibration)
    end = max(e["time"] for e in read_events(run_dir) if e["kind"] == "stage_end")
    return expected, end - read_json(run_dir / "job.json")["launched"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench/out/estimates"))
    parser.add_argument("--reuse", action="store_true", help="replay runs already trained under --out")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between replayed moments")
    args = parser.parse_args()
    ws = Workspace.create(args.out.resolve())
    folder = colour_folder(ws.data_roots[0])
    plans = {"digits-demo": ("digits", 10, "digits", None),
             "colour": (str(folder), len(list(folder.iterdir())), "auto", 300.0),
             "colour-unlabelled": (str(folder.with_name("colour-flat")), "auto", "auto", 300.0)}
    runs = {}
    for name, plan in plans.items():
        run_dir = ws.runs / name
        if not (args.reuse and (run_dir / "metrics.json").exists() and "projection" in RunMetrics.load(run_dir)):
            shutil.rmtree(run_dir, ignore_errors=True)
            print(f"training {name} ...", flush=True)
            run_dir = train(ws, name, *plan)
        runs[name] = run_dir
    summary = []
    for name, run_dir in runs.items():
        others = estimates.Calibration.of_runs([runs[other] for other in runs if other != name])
        for label, calibration in (("none", estimates.Calibration()), ("other runs", others)):
            rows = replay(run_dir, calibration, args.every)
            print(f"\n{name}, calibration: {label}\n| t (s) | left (s) | estimate (s) | error |\n|---|---|---|---|")
            errors = []
            for t, left, estimate in rows:
                error = None if estimate is None else abs(estimate - left) / left
                if error is not None and t >= FIRST_MINUTE and left >= LAST_SECONDS:
                    errors.append(error)
                print(f"| {t:.0f} | {left:.0f} | {'-' if estimate is None else f'{estimate:.0f}'} | "
                      f"{'-' if error is None else f'{error:.0%}'} |")
            expected, took = expected_error(run_dir, calibration)
            summary.append((name, label, took, expected, max(errors) if errors else float("nan")))
    print("\n| run | calibration | took (s) | expected before Start (s) | max error from 60 s, 30 s or more left |")
    print("|---|---|---|---|---|")
    for name, label, took, expected, worst in summary:
        print(f"| {name} | {label} | {took:.0f} | {expected:.0f} | {worst:.0%} |")


if __name__ == "__main__":
    main()
