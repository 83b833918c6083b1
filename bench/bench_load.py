"""The digits pipeline on idle cores and beside busy processes: seconds per stage and the slowdown.

    python bench/bench_load.py [--busy 1 3] [--repeats 1] [--preset digits] [--timeout 900]

A "busy process" is ``python -c "while True: pass"``: what the app's own server, a browser or a
test does to a run on a laptop. Each run is a fresh ``python -m scan_core train`` process, as the
app starts one; each repeat times it idle, then beside each number of busy processes, back to back,
and compares each with the idle run of its repeat. Every row gives the machine's 1-minute load
average as the run started (what other users of the machine add) and the CPU seconds the run
itself used (threads spinning at barriers show there). Targets (issue 12): one busy process slows
the pipeline at most 2x, three on 2 cores at most 4x.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from scan_core.data.rundir import STAGE_NAMES  # noqa: E402

TARGETS = {1: 2.0, 3: 4.0}   # busy processes -> the most slowdown allowed


def timed_run(preset: str, busy: int, timeout: float) -> dict:
    """Seconds per stage (from ``metrics.json``) and in all of one run beside ``busy`` busy
    processes, the CPU seconds the run used and the load average as it started."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    load = os.getloadavg()[0]
    try:
        with tempfile.TemporaryDirectory() as out:
            started, cpu = time.time(), resource.getrusage(resource.RUSAGE_CHILDREN)
            try:
                subprocess.run([sys.executable, "-m", "scan_core", "train", "--dataset", "digits", "--preset", preset,
                                "--out", out], cwd=ROOT, check=True, timeout=timeout, capture_output=True, text=True)
            except subprocess.TimeoutExpired:
                return {"total": float("inf"), "load": load}
            except subprocess.CalledProcessError as error:
                sys.exit(f"the run beside {busy} busy processes failed:\n{error.stderr[-3000:]}")
            total = time.time() - started
            used = resource.getrusage(resource.RUSAGE_CHILDREN)
            metrics = json.loads((Path(out) / "metrics.json").read_text())
            seconds = {stage: values["seconds"] for stage, values in metrics.items() if "seconds" in values}
            return {**seconds, "total": total, "cpu": used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime,
                    "load": load, "acc": metrics.get("scan", {}).get("acc")}
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--busy", type=int, nargs="+", default=[1, 3], help="numbers of busy processes to run beside")
    parser.add_argument("--repeats", type=int, default=1, help="idle and busy runs, back to back, this many times")
    parser.add_argument("--preset", default="digits")
    parser.add_argument("--timeout", type=float, default=900, help="seconds before a run counts as stalled")
    args = parser.parse_args()
    if args.repeats < 1 or min(args.busy) < 1:
        parser.error("--repeats and every --busy must be at least 1")
    print(f"machine: {os.cpu_count()} cores; {sys.platform}")
    rows = []   # (repeat, busy, timings)
    for repeat in range(1, args.repeats + 1):
        for busy in (0, *args.busy):
            rows.append((repeat, busy, timed_run(args.preset, busy, args.timeout)))
    stages = [name for name in STAGE_NAMES if any(name in row for _, _, row in rows)]
    print(f"| digits, preset {args.preset} | load at start | " + " | ".join(stages)
          + " | whole run (s) | run's CPU (s) | slowdown | SCAN ACC |")
    print("|---" * (len(stages) + 6) + "|")
    slowdowns: dict[int, list[float]] = {}
    for repeat, busy, row in rows:
        idle = next(r for rp, b, r in rows if rp == repeat and b == 0)
        slowdown = row["total"] / idle["total"]
        if busy:
            slowdowns.setdefault(busy, []).append(slowdown)
        cells = [f"{row.get(stage, float('nan')):.1f}" for stage in stages]
        name = f"{'idle' if not busy else f'beside {busy} busy'} (#{repeat})"
        print(f"| {name} | {row['load']:.1f} | " + " | ".join(cells) + f" | {row['total']:.1f} | "
              f"{row.get('cpu', float('nan')):.1f} | {slowdown:.2f}x | {row.get('acc') or float('nan'):.3f} |")
    for busy, values in slowdowns.items():
        target = f" (target <= {TARGETS[busy]:g}x)" if busy in TARGETS else ""
        print(f"beside {busy} busy: slowdown {', '.join(f'{v:.2f}x' for v in values)}{target}")


if __name__ == "__main__":
    main()
