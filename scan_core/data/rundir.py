"""What a run directory holds, and how its state is read: the one table of stages, ``status.json``
with the liveness of the training process, and the ``events.jsonl`` progress log.

Stages, in order (data flows one way)::

    images -> pretext -> manifold -> neighbors -> suggest -> scan -> selflabel -> projection -> refine

:data:`STAGES` declares each once: its name, its title, the artifacts it writes, whether it trains
(epochs the CLI can set, a checkpoint per epoch), whether it assigns clusters (``<name>_probs.npy``
``(N, K)``), and the config key that turns it on when it is optional (``manifold``: with
``manifold_dims``; ``suggest``: with ``suggest_clusters``; ``projection``: with ``umap``), or the
request file that asks for it (``refine``: ``refine_labels.json``, which only the refine command
writes: it runs on request, after training, on the labels the user gave image by image). The engine runs the module
``scan_core.engine.stages.<name>`` for each; the app reads this table without importing torch or any training code.

``status.json`` always holds ``state``, ``stage`` (running or last run; None when finished),
``completed`` (stages done, in order), ``error`` (None or the message), ``pid`` and ``pid_start``
(the training process and its start time, to recognise it) and ``updated`` (unix time). ``state``
is one of ``new`` (nothing started), ``running``, ``finished``, ``failed`` (an error: ``error`` says
which), ``cancelled`` (SIGTERM, ``error`` "cancelled by user"), ``interrupted`` (SIGINT, or the
process died without a word: SIGKILL, a crash).

Each line of ``events.jsonl`` is one JSON object with ``time`` (unix seconds), ``kind``
(``stage_start``, ``step``, ``stage_end``, ``resumed``, ``error``) and ``stage``; ``step`` events add
``step``, ``total``, ``loss`` and ``eta_s``.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from .artifacts import CorruptArtifact, load_json
from .run_metrics import RunMetrics


@dataclass(frozen=True)
class Stage:
    """One stage of a run: ``title`` names it in tables of scores; ``artifacts`` are paths relative
    to the run directory. An optional stage runs when the config key ``enabled_by`` is set, or
    (``requested_by``) when the run directory holds that request file."""

    name: str
    title: str
    artifacts: tuple[str, ...]
    trains: bool = False
    assigns_clusters: bool = False
    enabled_by: str | None = None
    requested_by: str | None = None

    @property
    def on_request(self) -> bool:
        """Run after training, when asked for, not as part of it."""
        return self.requested_by is not None


SUGGESTION = "suggested_k.json"  # the suggest stage's K and its evidence
CLASS_PROBS = "class_probs.npy"  # a frozen ImageNet backbone's class probabilities (N, 1000), for cluster names
REFINE_LABELS = "refine_labels.json"  # the image labels a refine learns from (written by the refine command)

STAGES = (
    Stage("images", "images", ("images/imageset.json", "report.json")),
    Stage("pretext", "pretext features + k-means", ("features.npy", "pretext.pt"), trains=True),
    Stage("manifold", "UMAP manifold + k-means", ("manifold.npy",), enabled_by="manifold_dims"),
    Stage("neighbors", "mined neighbours", ("neighbors.npy",)),
    Stage("suggest", "suggested K", (SUGGESTION,), enabled_by="suggest_clusters"),
    Stage("scan", "SCAN", ("scan_probs.npy", "scan.pt"), trains=True, assigns_clusters=True),
    Stage("selflabel", "SCAN + self-label", ("selflabel_probs.npy", "selflabel.pt"), trains=True,
          assigns_clusters=True),
    Stage("projection", "UMAP projection", ("projection.npy",), enabled_by="umap"),
    Stage("refine", "refined with your labels", ("refine_probs.npy", "refine.pt", REFINE_LABELS), trains=True,
          assigns_clusters=True, requested_by=REFINE_LABELS),
)
STAGE_NAMES = tuple(stage.name for stage in STAGES)
TRAINING_STAGES = tuple(stage.name for stage in STAGES if stage.trains and not stage.on_request)  # train's
CLUSTER_STAGES = tuple(stage.name for stage in STAGES if stage.assigns_clusters)  # later ones refine earlier


def planned_stages(config: dict, run_dir: Path | None = None) -> tuple[Stage, ...]:
    """The stages a run with ``config`` (``config.json``'s content) goes through, in order: every
    optional one only when its ``enabled_by`` key is set, a stage on request only when ``run_dir``
    holds its request file."""
    return tuple(stage for stage in STAGES if (stage.enabled_by is None or _setting(config, stage.enabled_by))
                 and (stage.requested_by is None or (run_dir is not None and (Path(run_dir) / stage.requested_by).exists())))


def _setting(config: dict, key: str):
    """``config[key]``, ``key`` dotted for a nested config (``refine.epochs``); None when absent."""
    for part in key.split("."):
        config = config.get(part) if isinstance(config, dict) else None
    return config


def final_stage(metrics: RunMetrics, finished: set[str] | list[str] | tuple[str, ...]) -> str | None:
    """The cluster stage whose assignment is the run's result, among the ``finished`` ones: the one
    ``metrics.json`` names under ``final`` (the selflabel stage keeps SCAN's clusters when self-
    labeling made them less consistent), else the last; None before SCAN ends."""
    named = metrics.final.stage if metrics.final else None
    if named in finished:
        return named
    return next((stage for stage in reversed(CLUSTER_STAGES) if stage in finished), None)


class RunState(StrEnum):
    """A run's ``state``, as ``status.json`` records it (its value is the string written), plus
    ``starting``: the app's word for a launched job that has not written its status yet."""

    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def working(self) -> bool:
        """Whether the run's training process is (about to be) at work."""
        return self in (RunState.STARTING, RunState.RUNNING)

    @property
    def stopped(self) -> bool:
        """Whether the run ended before finishing (an error, a cancel, an interruption)."""
        return self in (RunState.FAILED, RunState.CANCELLED, RunState.INTERRUPTED)


@dataclass(frozen=True)
class RunStatus:
    """What a reader needs of ``status.json`` (fields: module docstring): the state, the stage running
    or last run (None when finished), the stages ``completed`` in order, the ``error`` (None or the
    message) and when it was ``updated`` (unix time; None before any status was written)."""

    state: RunState
    stage: str | None = None
    completed: tuple[str, ...] = ()
    error: str | None = None
    updated: float | None = None

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> RunStatus:
        """The status in ``record`` (``status.json``'s content); ValueError for a state no run has."""
        try:
            state = RunState(record.get("state"))
        except ValueError:
            raise ValueError(f"status.json holds no known state ({', '.join(RunState)}): {dict(record)!r}") from None
        return cls(state, record.get("stage"), tuple(record.get("completed") or ()), record.get("error"),
                   record.get("updated"))


INTERRUPTED = "the training process ended unexpectedly (killed?)"
NEW_STATUS = {"state": RunState.NEW.value, "stage": None, "completed": [], "error": None, "pid": None, "updated": None}


def stored_status(run_dir: Path) -> dict:
    """``status.json`` as written (the record the engine updates), or :data:`NEW_STATUS` when there
    is none or it is unreadable."""
    try:
        return {**NEW_STATUS, **load_json(Path(run_dir) / "status.json")}
    except (FileNotFoundError, CorruptArtifact):
        return dict(NEW_STATUS)


def read_status(run_dir: Path) -> RunStatus:
    """A run's ``status.json`` (fields and states: module docstring), for a reader to show or act on.

    A ``running`` run whose training process is gone (SIGKILL, a crash, a reboot) is returned as
    ``interrupted`` with the error :data:`INTERRUPTED`; so is one whose pid now belongs to another
    process (told apart by its start time, from ``/proc``). A directory without a readable status
    reads as ``new``; ValueError when the file holds a state no run has.
    """
    status = stored_status(run_dir)
    if status["state"] == RunState.RUNNING and not process_alive(status["pid"], status.get("pid_start")):
        status.update(state=RunState.INTERRUPTED.value, error=INTERRUPTED)
    return RunStatus.from_json(status)


def process_start(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks after boot (``/proc``), None without ``/proc``."""
    stat = _proc_stat(pid)
    return stat[1] if stat else None


def process_alive(pid: int | None, started: int | None) -> bool:
    """Whether ``pid`` is still the live process that started at ``started`` (a zombie, or a
    recycled pid with another start time, is not); without ``/proc`` any live ``pid`` counts."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, run by another user
    stat = _proc_stat(pid)
    return stat is None or (stat[0] != "Z" and started in (None, stat[1]))


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """``(state letter, start time in clock ticks after boot)`` of ``pid``; None without ``/proc``."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return fields[0], int(fields[19])


def read_events(run_dir: Path) -> list[dict]:
    """All complete event lines of a run (a partly written last line is ignored)."""
    path = Path(run_dir) / "events.jsonl"
    if not path.exists():
        return []
    events = []
    for line in path.read_text().splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events
