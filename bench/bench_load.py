"""The digits pipeline on idle cores and beside busy processes: seconds per stage and the slowdown.

    python bench/bench_load.py [--busy 1] [--preset digits] [--timeout 900]

A "busy process" is ``python -c "while True: pass"``: what the app's own server, a browser or a
test does to a run on a laptop. Each run is a fresh ``python -m scan_core train`` process, as the
app starts one. Target (issue 12): a busy process slows the pipeline at most 2x.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from scan_core.data.rundir import STAGE_NAMES  # noqa: E402


def timed_run(preset: str, busy: int, timeout: float) -> dict:
    """Seconds per stage (from ``metrics.json``) and in all of one run beside ``busy`` busy processes."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    try:
        with tempfile.TemporaryDirectory() as out:
            started = time.time()
            try:
                subprocess.run([sys.executable, "-m", "scan_core", "train", "--dataset", "digits", "--preset", preset,
                                "--out", out], cwd=ROOT, check=True, timeout=timeout, capture_output=True)
            except subprocess.TimeoutExpired:
                return {"total": float("inf")}
            metrics = json.loads((Path(out) / "metrics.json").read_text())
            seconds = {stage: values["seconds"] for stage, values in metrics.items() if "seconds" in values}
            return {**seconds, "total": time.time() - started, "acc": metrics.get("scan", {}).get("acc")}
    finally:
        for hog in hogs:
            hog.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--busy", type=int, default=1, help="busy processes beside the loaded run")
    parser.add_argument("--preset", default="digits")
    parser.add_argument("--timeout", type=float, default=900, help="seconds before a run counts as stalled")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; {sys.platform}")
    idle = timed_run(args.preset, 0, args.timeout)
    loaded = timed_run(args.preset, args.busy, args.timeout)
    stages = [name for name in STAGE_NAMES if name in idle]
    print(f"| digits, preset {args.preset} | " + " | ".join(stages) + " | whole run (s) | SCAN ACC |")
    print("|---" * (len(stages) + 3) + "|")
    for name, row in (("idle", idle), (f"beside {args.busy} busy", loaded)):
        cells = [f"{row.get(stage, float('nan')):.1f}" for stage in stages]
        print(f"| {name} | " + " | ".join(cells) + f" | {row['total']:.1f} | {row.get('acc') or float('nan'):.3f} |")
    print(f"slowdown: {loaded['total'] / idle['total']:.2f}x (target <= 2x)")


if __name__ == "__main__":
    main()
