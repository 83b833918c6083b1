"""Time estimates for the app: how long a new run will take (:func:`expected_seconds`), and how long
a running one still needs (:func:`remaining`).

The rule (:mod:`scan_core.costs`) gives each stage's seconds from the image count, the epochs and the
backbone. It is off by a different factor for each stage, route and machine, so every estimate scales
each stage by the factor measured on that stage in the workspace's latest finished runs of the same
route (:class:`Calibration`, :func:`route`: a HOG manifold run's scan trains heads on ten numbers an
image where a frozen backbone's also embeds its feature banks, and one's factor says nothing of the
other's); the estimate before Start and the one in a run's first second are then the same. A stage
no finished run of its route has measured keeps the rule as it is.

While a run goes on, the stages it has ended say how fast this machine is for it now (a busy machine
runs everything slower): the stages still to come are scaled by their seconds taken over their
seconds estimated (:func:`run_speed`). The current stage follows its own progress once
:data:`MIN_PROGRESS` of the part it is in is done (the ETA of its last step, counted down since: the
rate of the first steps is noise), plus the estimate of the parts after that one (the scan's training
after its feature banks); before that, and in stages that count seconds against an estimate (the
UMAP ones), its estimate less the time it has run. Past that by more than :data:`OVERDUE_SECONDS`,
the stage is *overdue*: :class:`Remaining` says so instead of counting down to zero.
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
from ..data.rundir import REFINE_LABELS, STAGE_NAMES, RunState, RunStatus, planned_stages

STARTUP_SECONDS = 5.0       # the job's Python, torch and its images loaded before the first stage
FACTOR_RANGE = (0.1, 10.0)  # how far a measured stage may scale the rule
MIN_RULE_SECONDS = 1.0      # stages the rule gives less: too short to measure a factor on
BANKS = "feature banks"      # the part of the scan stage that runs the network, before its training
HISTORY = 5                 # finished runs a calibration reads, newest first
MIN_PROGRESS = 0.05         # the share of a part done before its measured rate is trusted
PRIOR_SECONDS = 45.0       # seconds of estimates at the prior speed a run's speed starts from (speed)
OVERDUE_SECONDS = 5.0       # how far past its estimate a stage runs before it is said to be overdue


@dataclass(frozen=True)
class Calibration:
    """Per ``(route, stage)``, seconds taken / seconds by the rule (the median over the runs measured)."""

    factors: dict[tuple[str, str], float] = field(default_factory=dict)

    @classmethod
    def of_runs(cls, run_dirs: list[Path]) -> Calibration:
        """The factors measured on the finished runs ``run_dirs`` (newest first; the first
        :data:`HISTORY` are read)."""
        measured: dict[tuple[str, str], list[float]] = {}
        for run_dir in run_dirs[:HISTORY]:
            if not (Path(run_dir) / "config.json").exists():
                continue
            way = route(RunConfig.load(Path(run_dir)))
            for stage, factor in stage_factors(Path(run_dir)).items():
                measured.setdefault((way, stage), []).append(factor)
        return cls({key: statistics.median(values) for key, values in measured.items()})

    def scale(self, config: RunConfig, stage: str) -> float:
        """The factor of ``stage`` in runs of ``config``'s route; 1 (the rule as it is) when no
        finished run of that route measured it."""
        return self.factors.get((route(config), stage), 1.0)

    def seconds(self, config: RunConfig, rule: dict[str, float]) -> dict[str, float]:
        """``rule`` (seconds per stage of a run with ``config``), each stage scaled by its factor."""
        return {stage: seconds * self.scale(config, stage) for stage, seconds in rule.items()}


def route(config: RunConfig) -> str:
    """What a run's stages do, in a few words: the heads' input, and for a network the backbone and
    whether SimCLR trains it or it is used frozen. Stage factors carry over between runs of one route."""
    if not config.uses_backbone:
        return config.head_input
    return f"{config.backbone}, {'trained' if config.pretext.epochs else 'frozen'}"


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
    return STARTUP_SECONDS + sum(calibration.seconds(config, rule_seconds(config, images, side)).values())


def refine_seconds(run_dir: Path, calibration: Calibration, epochs: int = REFINE_EPOCHS) -> float | None:
    """Rough seconds a refine of ``epochs`` of the trained run in ``run_dir`` takes, the job's start-up
    included (None before its images stage has recorded them)."""
    images = RunMetrics.load(run_dir).stage("images")
    if not (run_dir / "config.json").exists() or "count" not in images:
        return None
    config = RunConfig.load(run_dir)
    config = dataclasses.replace(config, refine=dataclasses.replace(config.refine, epochs=epochs))
    seconds = costs.stage_seconds(config, images["count"], images.get("height", 28), ["refine"])["refine"]
    return STARTUP_SECONDS + seconds * calibration.scale(config, "refine")


def remaining(run_dir: Path, state: RunStatus, events: list[dict], calibration: Calibration,
              now: float | None = None) -> Remaining | None:
    """What the running job in ``run_dir`` still needs (module docstring); ``state``: its job
    state, ``events``: its ``events.jsonl``. None unless it is running past its images stage."""
    run_dir = Path(run_dir)
    rule = run_rule(run_dir)
    current = state.stage
    if state.state != RunState.RUNNING or current not in rule:
        return None
    now = time.time() if now is None else now
    config = RunConfig.load(run_dir)
    images = RunMetrics.load(run_dir).stage("images")["count"]
    estimated, banks = run_seconds(config, images, calibration.seconds(config, rule), events, now)
    since = stage_events(events, current)
    trusted = trusted_steps(since)
    if trusted:  # its progress, and the parts after the one it is in (the scan's training after its banks)
        after = estimated[current] - banks if trusted[-1].get("part") == BANKS else 0.0
        left = trusted[-1]["eta_s"] - (now - trusted[-1]["time"]) + after
    else:
        left = estimated[current] - (now - since[0]["time"] if since else 0.0)
    later = sum(seconds for stage, seconds in estimated.items() if STAGE_NAMES.index(stage) > STAGE_NAMES.index(current))
    return Remaining(max(0.0, left) + later, overdue=left < -OVERDUE_SECONDS)


def run_seconds(config: RunConfig, images: int, estimated: dict[str, float], events: list[dict],
                now: float | None = None) -> tuple[dict[str, float], float]:
    """``estimated`` (seconds per stage of a run with ``config`` on ``images`` images) as fast as the
    run's ``events`` show it going, and the scan's feature banks' share of it: the network's passes
    (the pretext's and the banks) at the pretext's speed, every other stage's work at that of the
    other work ended (:func:`speed`; the network's speed until some has: both slow down with a busy
    machine). A UMAP stage (it counts seconds against its estimate) running past its estimate at
    ``now`` counts as ended with the time it has run so far: it says the machine is slower than
    thought before it ends."""
    took = {e["stage"]: e["seconds"] for e in events if e.get("kind") == "stage_end" and "seconds" in e}
    starts = [e for e in events if e.get("kind") == "stage_start"]
    current = starts[-1]["stage"] if starts and starts[-1]["stage"] not in took else None
    counted = [e for e in stage_events(events, current) if e.get("kind") == "step"]
    if current in estimated and now is not None and counted and all(e.get("unit") == "s" for e in counted):
        ran = now - starts[-1]["time"]  # a stage that counts seconds against its estimate (UMAP's), past it
        if ran > estimated[current]:
            took[current] = ran
    banks = costs.share_done(config, images, "scan", BANKS) * estimated["scan"] if "scan" in estimated else 0.0
    work = {**estimated, "scan": estimated.get("scan", 0.0) - banks}
    if "scan" in took:  # its training: the time after its last bank
        bank_steps = [e["time"] for e in stage_events(events, "scan") if e.get("part") == BANKS]
        took["scan"] -= bank_steps[-1] - stage_events(events, "scan")[0]["time"] if bank_steps else 0.0
    network = speed({stage: seconds for stage, seconds in took.items() if stage == "pretext"}, work, prior=0.0)
    others = speed({stage: seconds for stage, seconds in took.items() if stage != "pretext"}, work, network)
    seconds = {stage: value * others for stage, value in work.items() if stage in estimated}
    if "pretext" in seconds:
        seconds["pretext"] = work["pretext"] * network
    if "scan" in seconds:
        seconds["scan"] += banks * network
    return seconds, banks * network


def speed(took: dict[str, float], estimated: dict[str, float], default: float = 1.0,
          prior: float = PRIOR_SECONDS) -> float:
    """How many times their estimates the stages ended ``took``: their seconds over their estimated
    ones, each sum with :data:`PRIOR_SECONDS` of ``default`` speed added (a stage of a few seconds
    says little of the machine, one of minutes much), within :data:`FACTOR_RANGE`."""
    ended = [stage for stage in took if stage in estimated]
    if sum(estimated[stage] for stage in ended) + prior < MIN_RULE_SECONDS:
        return default
    ratio = (sum(took[stage] for stage in ended) + prior * default) / (sum(estimated[stage] for stage in ended) + prior)
    return min(max(ratio, FACTOR_RANGE[0]), FACTOR_RANGE[1])


def trusted_steps(since: list[dict]) -> list[dict]:
    """The step events among ``since`` (a stage's) whose ETA measures its progress: counted in steps
    or images (not seconds against an estimate), once :data:`MIN_PROGRESS` of their part is done."""
    return [e for e in since if e.get("kind") == "step" and e.get("eta_s") is not None and e.get("unit") != "s"
            and e["step"] >= MIN_PROGRESS * e["total"]]


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
