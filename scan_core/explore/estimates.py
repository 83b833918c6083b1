"""Time estimates for the app: how long a new run will take (:func:`expected_seconds`), and how long
a running one still needs (:func:`remaining`).

The rule (:mod:`scan_core.costs`) gives each stage's seconds from the image count, the epochs and the
backbone. It is off by a different factor for each stage and machine, so every estimate scales each
stage by the factor measured on that stage in the workspace's latest finished runs
(:class:`Calibration`); the estimate before Start and the one in a run's first second are then the
same. A stage no finished run has measured keeps the rule as it is: the factor of another stage
predicts it badly (on digits the manifold ran at 3x its rule and the projection after it at 0.6x), and
scaling by it made the whole-run estimate jump when a stage ended.

While a stage runs, what is left of it comes from two readings: the calibrated rule less the time
it has run, and what its own progress says is left of the part it is in (the ETA of its last step,
counted down since, once :data:`MIN_PROGRESS` of the part is done: the rate of the first steps is
noise), whichever is larger. The first covers parts that report nothing (a stage's set-up, its
predictions after training); the second follows measured progress when the rule is short. Past
both by more than :data:`OVERDUE_SECONDS`, the stage is *overdue*: :class:`Remaining` says so
instead of counting down to zero.
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import costs
from ..config import REFINE_EPOCHS, RunConfig
from ..data.artifacts import read_json
from ..data.run_metrics import RunMetrics
from ..data.rundir import REFINE_LABELS, STAGE_NAMES, planned_stages

STARTUP_SECONDS = 5.0       # the job's Python, torch and its images loaded before the first stage
FACTOR_RANGE = (0.1, 10.0)  # how far a measured stage may scale the rule
MIN_RULE_SECONDS = 1.0      # stages the rule gives less: too short to measure a factor on
HISTORY = 5                 # finished runs a calibration reads, newest first
MIN_PROGRESS = 0.05         # the share of a part done before its measured rate is trusted
OVERDUE_SECONDS = 5.0       # how far past its estimate a stage runs before it is said to be overdue


@dataclass(frozen=True)
class Calibration:
    """Per stage, seconds taken / seconds by the rule (the median over the runs measured)."""

    factors: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of_runs(cls, run_dirs: list[Path]) -> Calibration:
        """The factors measured on the finished runs ``run_dirs`` (newest first; the first
        :data:`HISTORY` are read)."""
        measured: dict[str, list[float]] = {}
        for run_dir in run_dirs[:HISTORY]:
            for stage, factor in stage_factors(Path(run_dir)).items():
                measured.setdefault(stage, []).append(factor)
        return cls({stage: statistics.median(values) for stage, values in measured.items()})

    def scale(self, stage: str) -> float:
        """The factor of ``stage``; 1 (the rule as it is) when no finished run measured it."""
        return self.factors.get(stage, 1.0)


@dataclass(frozen=True)
class Remaining:
    """What a running job still needs: ``seconds`` in all, and ``overdue`` (the current stage has
    run past its estimate; ``seconds`` then counts only the stages after it)."""

    seconds: float
    overdue: bool = False


def rule_seconds(config: RunConfig, images: int, side: int, run_dir: Path | None = None) -> dict[str, float]:
    """Rough seconds of each stage a run with ``config`` goes through on ``images`` images of
    ``side`` pixels, by :mod:`scan_core.costs` (this machine's speed aside); ``run_dir``: the run's
    directory, whose requests (a refine) add their stages, with the epochs they ask for."""
    stages = [stage.name for stage in planned_stages(config.to_dict(), run_dir)]
    if "refine" in stages:
        config = dataclasses.replace(config, refine=config.refine.asked_by(read_json(Path(run_dir) / REFINE_LABELS)))
    return costs.stage_seconds(config, images, side, stages)


def expected_seconds(config: RunConfig, images: int, side: int, calibration: Calibration) -> float:
    """Rough seconds a new run with ``config`` takes on ``images`` images of ``side`` pixels: each
    stage's rule scaled by ``calibration``, plus the job's start-up."""
    rule = rule_seconds(config, images, side)
    return STARTUP_SECONDS + sum(seconds * calibration.scale(stage) for stage, seconds in rule.items())


def refine_seconds(run_dir: Path, calibration: Calibration, epochs: int = REFINE_EPOCHS) -> float | None:
    """Rough seconds a refine of ``epochs`` of the trained run in ``run_dir`` takes, the job's start-up
    included (None before its images stage has recorded them)."""
    images = RunMetrics.load(run_dir).stage("images")
    if not (run_dir / "config.json").exists() or "count" not in images:
        return None
    config = RunConfig.load(run_dir)
    config = dataclasses.replace(config, refine=dataclasses.replace(config.refine, epochs=epochs))
    seconds = costs.stage_seconds(config, images["count"], images.get("height", 28), ["refine"])["refine"]
    return STARTUP_SECONDS + seconds * calibration.scale("refine")


def remaining(run_dir: Path, state: dict, events: list[dict], calibration: Calibration,
              now: float | None = None) -> Remaining | None:
    """What the running job in ``run_dir`` still needs (module docstring); ``state``: its job
    state, ``events``: its ``events.jsonl``. None unless it is running past its images stage."""
    rule = run_rule(Path(run_dir))
    current = state.get("stage")
    if state["state"] != "running" or current not in rule:
        return None
    now = time.time() if now is None else now
    since = stage_events(events, current)
    ran = now - since[0]["time"] if since else 0.0
    by_rule = rule[current] * calibration.scale(current) - ran
    measured = [e for e in since if e.get("kind") == "step" and e.get("eta_s") is not None and e.get("unit") != "s"]
    trusted = [e for e in measured if e["step"] >= MIN_PROGRESS * e["total"]]
    by_progress = trusted[-1]["eta_s"] - (now - trusted[-1]["time"]) if trusted else 0.0
    left = max(by_rule, by_progress)
    later = sum(seconds * calibration.scale(stage) for stage, seconds in rule.items()
                if STAGE_NAMES.index(stage) > STAGE_NAMES.index(current))
    return Remaining(max(0.0, left) + later, overdue=by_progress <= 0 and by_rule < -OVERDUE_SECONDS)


def stage_events(events: list[dict], stage: str | None) -> list[dict]:
    """The events since ``stage`` last started (its current attempt; empty if it never started)."""
    starts = [i for i, event in enumerate(events) if event.get("kind") == "stage_start" and event.get("stage") == stage]
    return events[starts[-1]:] if starts else []


def run_rule(run_dir: Path) -> dict[str, float]:
    """:func:`rule_seconds` of a run, from its config and its images' count and size (empty until
    its images stage has recorded them)."""
    images = RunMetrics.load(run_dir).stage("images")
    if not (run_dir / "config.json").exists() or "count" not in images:
        return {}
    return rule_seconds(RunConfig.load(run_dir), images["count"], images.get("height", 28), run_dir)


def stage_factors(run_dir: Path) -> dict[str, float]:
    """Seconds taken / seconds by the rule of every stage the run has recorded that the rule gives
    at least :data:`MIN_RULE_SECONDS`, within :data:`FACTOR_RANGE`."""
    rule = run_rule(run_dir)
    metrics = RunMetrics.load(run_dir)
    return {stage: min(max(metrics[stage]["seconds"] / seconds, FACTOR_RANGE[0]), FACTOR_RANGE[1])
            for stage, seconds in rule.items()
            if seconds >= MIN_RULE_SECONDS and "seconds" in metrics.stage(stage)}
