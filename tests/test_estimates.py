"""Time estimates (scan_core.explore.estimates): the rule per stage, its calibration on finished runs,
and the remaining time of a running job, on hand-worked numbers and replayed from a real run."""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import pytest

from scan_core.config import RunConfig
from scan_core.costs import STAGE_COSTS
from scan_core.data.artifacts import load_json, save_json
from scan_core.data.rundir import STAGE_NAMES, RunState, RunStatus, read_events
from scan_core.explore import estimates, jobs
from scan_core.explore.workspace import Workspace
from scan_core.method.manifold import manifold_seconds
from scan_core.method.projection import umap_seconds
from scan_core.presets import make_config


def digits_config(preset: str = "digits", **overrides) -> RunConfig:
    return make_config("digits", 10, 1797, 16, 1, preset, **overrides)


def test_every_stage_has_a_cost():
    """A stage the table lacked (refine) once left Data & training a traceback after a refine."""
    assert set(STAGE_COSTS) == set(STAGE_NAMES)


def test_the_rule_follows_images_and_epochs(tmp_path):
    rule = estimates.rule_seconds(digits_config(), 1797, 16)
    assert list(rule) == ["images", "pretext", "manifold", "neighbors", "scan", "selflabel", "projection"]
    assert rule["projection"] == pytest.approx(umap_seconds(1797))  # what the running stage counts against
    assert rule["manifold"] == pytest.approx(manifold_seconds(1797))
    tiny = estimates.rule_seconds(digits_config("tiny"), 1797, 16)
    assert "projection" not in tiny and "manifold" not in tiny  # tiny: no UMAP, no manifold
    per_epoch = 50 * 0.3  # the digits preset's 50 epochs at HEAD_EPOCH_SECONDS, whatever the images
    assert estimates.rule_seconds(digits_config(), 17970, 16)["scan"] == pytest.approx(
        10 * (rule["scan"] - per_epoch) + per_epoch)
    assert "refine" not in estimates.rule_seconds(digits_config(), 1797, 16, tmp_path)  # no refine asked
    (tmp_path / "refine_labels.json").write_text(json.dumps({"images": [1], "clusters": [0], "epochs": 20}))
    refined = estimates.rule_seconds(digits_config(), 1797, 16, tmp_path)  # a request plans it, with its epochs
    # STAGE_COSTS["refine"], and 0.3 s an epoch (HEAD_EPOCH_SECONDS)
    assert refined["refine"] == pytest.approx(1.0 + 1797 * (4e-4 + 20 * 3e-5) + 20 * 0.3)


def finished_run(ws: Workspace, name: str, factors: dict[str, float], config: RunConfig) -> None:
    """A finished run whose stages took ``factors`` times the rule (1 for a stage not named)."""
    run_dir = ws.new_run_dir(name)
    save_json(run_dir / "config.json", config.to_dict())
    rule = estimates.rule_seconds(config, 1797, 16)
    save_json(run_dir / "metrics.json", {stage: {"seconds": seconds * factors.get(stage, 1.0)}
                                         for stage, seconds in rule.items()} | {
        "images": {"count": 1797, "height": 16, "seconds": 0.01}})
    save_json(run_dir / "status.json", {"state": "finished", "stage": None, "completed": list(rule),
                                        "error": None, "pid": None, "updated": time.time()})


def test_each_stage_is_scaled_by_its_median_factor_in_the_finished_runs(tmp_path):
    ws = Workspace.create(tmp_path / "home")
    config = digits_config()
    for name, factors in (("a", {"scan": 2.0, "manifold": 3.0}), ("b", {"scan": 4.0}), ("c", {"scan": 3.0})):
        finished_run(ws, name, factors, config)
    calibration = estimates.Calibration.of_runs(jobs.finished_runs(ws))
    assert calibration.scale(config, "scan") == pytest.approx(3.0)      # the median of 2, 4 and 3
    assert calibration.scale(config, "manifold") == pytest.approx(1.0)  # the median of 3, 1 and 1
    assert ("hog", "images") not in calibration.factors               # 0.09 s by the rule: too short to measure
    colour = make_config("/some/folder", 4, 600, 64, 3, backbone="efficientnet-lite0-imagenet")
    assert calibration.scale(colour, "scan") == 1.0  # another route: the HOG manifold's factors are not its
    rule = estimates.rule_seconds(config, 1797, 16)
    expected = estimates.expected_seconds(config, 1797, 16, calibration)
    assert expected == pytest.approx(estimates.STARTUP_SECONDS + sum(rule.values()) + 2 * rule["scan"])
    assert estimates.expected_seconds(config, 1797, 16, estimates.Calibration()) == pytest.approx(
        estimates.STARTUP_SECONDS + sum(rule.values()))            # no finished run: the rule as it is
    assert estimates.Calibration.of_runs([]).scale(config, "scan") == 1.0  # unmeasured: the rule as it is


def test_the_remaining_time_is_the_larger_of_the_rule_and_the_progress(tmp_path):
    ws = Workspace.create(tmp_path / "home")
    config = digits_config()
    run_dir = ws.new_run_dir("halfway")
    rule = estimates.rule_seconds(config, 1797, 16)
    save_json(run_dir / "config.json", config.to_dict())
    save_json(run_dir / "metrics.json", {"images": {"count": 1797, "height": 16, "seconds": 0.1},
                                         "manifold": {"seconds": rule["manifold"] * 2}})
    state = RunStatus(RunState.RUNNING, "scan", ("images", "pretext", "manifold", "neighbors"))
    now = time.time()
    start = {"time": now - 2, "kind": "stage_start", "stage": "scan"}
    step = {"time": now - 1, "kind": "step", "stage": "scan", "step": 1, "total": 4, "eta_s": 60.0}
    calibration = estimates.Calibration()
    # no step yet: the rule less the 2 s run; the later stages by the rule (the manifold's factor 2 is
    # not theirs)
    later = rule["selflabel"] + rule["projection"]
    left = estimates.remaining(run_dir, state, [start], calibration, now=now)
    assert left == estimates.Remaining(rule["scan"] - 2 + later)
    # a step whose ETA is longer than the rule's: the progress wins (60 s, less the second since)
    assert estimates.remaining(run_dir, state, [start, step], calibration, now=now) == estimates.Remaining(59 + later)
    # past both: overdue, and the seconds count the later stages only
    late = estimates.remaining(run_dir, state, [{**start, "time": now - 500}], calibration, now=now)
    assert late == estimates.Remaining(later, overdue=True)
    assert estimates.remaining(run_dir, replace(state, state=RunState.CANCELLED), [start], calibration) is None


def replay(run_dir, calibration, samples: int = 60) -> list[tuple[float, float, bool]]:
    """The run's remaining time as the app saw it at ``samples`` moments from its first stage to its
    end: (seconds really left, estimate, overdue), from its events and the metrics of the stages ended."""
    events = read_events(run_dir)
    metrics = load_json(run_dir / "metrics.json")
    ends = {e["stage"]: e["time"] for e in events if e["kind"] == "stage_end"}
    starts = {e["stage"]: e["time"] for e in events if e["kind"] == "stage_start"}
    first, last = min(starts.values()), max(ends.values())
    every = (last - first) / samples
    seen = []
    now = first + every / 2
    while now < last:
        current = next((s for s in starts if starts[s] <= now < ends[s]), None)
        if current not in (None, "images"):
            done = [s for s in ends if ends[s] <= now]
            save_json(run_dir / "metrics.json", {s: metrics[s] for s in done if s in metrics})
            state = RunStatus(RunState.RUNNING, current, tuple(done))
            left = estimates.remaining(run_dir, state, [e for e in events if e["time"] <= now], calibration, now=now)
            seen.append((last - now, left.seconds, left.overdue))
        now += every
    save_json(run_dir / "metrics.json", metrics)
    return seen


def test_a_replayed_run_counts_down_without_jumps(home, tmp_path):
    """The digits run replayed moment by moment with no calibration (the first run of a workspace):
    the estimate never rises by more than a quarter of the run plus a few seconds, and outside a
    stage said to be overdue it never says the run is nearly done while much of it is left. (How
    close a calibrated estimate comes is the hand-worked test above: a calibration from a run trained
    in this process would mislead, numba's compilation of UMAP being done by then.)"""
    run_dir = tmp_path / "digits"
    shutil.copytree(home / "runs" / "digits", run_dir)
    seen = replay(run_dir, estimates.Calibration())
    assert len(seen) > 20
    rises = [later[1] - earlier[1] for earlier, later in zip(seen, seen[1:])]
    assert max(rises) <= 0.25 * max(s[0] for s in seen) + 3, json.dumps(seen)
    assert all(estimate + 5 >= 0.3 * actual for actual, estimate, overdue in seen if not overdue), json.dumps(seen)


RECORDED = Path(__file__).parent / "data" / "estimates"  # three runs of bench/bench_estimates.py, as they went


def replayed_errors(run_dir: Path, calibration: estimates.Calibration, every: float = 5.0
                    ) -> list[tuple[float, float, float]]:
    """``(t, seconds really left, the whole-run estimate)`` every ``every`` seconds of a recorded run
    from the first minute after its launch while 30 s or more are left (in the last seconds any error
    is a large share), from the events written up to then, as the progress card reads them."""
    events = read_events(run_dir)
    launched = load_json(run_dir / "job.json")["launched"]
    end = max(e["time"] for e in events if e["kind"] == "stage_end")
    seen, t = [], 60.0
    while launched + t <= end - 30:
        now = launched + t
        known = [e for e in events if e["time"] <= now]
        started = [e["stage"] for e in known if e["kind"] == "stage_start"]
        state = RunStatus(RunState.RUNNING, started[-1], tuple(e["stage"] for e in known if e["kind"] == "stage_end"))
        seen.append((t, end - now, estimates.remaining(run_dir, state, known, calibration, now=now).seconds))
        t += every
    return seen


@pytest.mark.parametrize("calibrated", [False, True])
def test_the_whole_run_estimate_of_recorded_runs_stays_within_a_quarter_from_the_first_minute(calibrated):
    """Three real runs, recorded by ``bench/bench_estimates.py`` on 2 cores shared with other work
    (every stage ran 1.3 to 5.6 times its rule): the digits demo, 282 colour clip-art images in 5
    folders with ``auto`` and the 300 s budget, and the same images unlabelled (K suggested). Replayed
    as a workspace's first run and calibrated on the other two, the whole-run estimate stays within
    25% of the time really left from the first minute on, while 30 s or more are left. (Before,
    factors carried over from other routes and stages that ended gave errors of 30% to 500%.)"""
    runs = sorted(path for path in RECORDED.iterdir() if path.is_dir())
    assert [run.name for run in runs] == ["colour", "colour-unlabelled", "digits-demo"]
    for run in runs:
        calibration = (estimates.Calibration.of_runs([other for other in runs if other != run]) if calibrated
                       else estimates.Calibration())
        seen = replayed_errors(run, calibration)
        assert len(seen) >= 5
        errors = [abs(estimate - left) / left for _, left, estimate in seen]
        assert max(errors) <= 0.25, run.name + "\n" + "\n".join(
            f"{t:.0f} s: {left:.0f} s left, estimated {estimate:.0f} s" for t, left, estimate in seen)
