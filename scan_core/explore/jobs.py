"""Training jobs for the app: one ``python -m scan_core train`` job at a time per workspace, of one
process or of several that ``torchrun`` starts (:mod:`scan_core.engine.ranks`; Cancel stops the
launcher's whole process group, every rank with it).

A job is a separate OS process in its own session, so it survives reruns of the Streamlit script,
a closed tab and a restart of the server; it talks to the app only through its run directory
(``status.json``, ``events.jsonl``, ``metrics.json``, ``train.log``). "One at a time" is an
exclusive ``flock`` on ``WORKSPACE/training.lock``: the launcher takes it without waiting (a second
start gets :class:`JobBusy`), hands the open descriptor to the child and closes its own copy, so
the lock is held exactly as long as the training process lives, even if it is killed.

The workspace's folders, run names and the folders the UI may read are in
:mod:`scan_core.explore.workspace`.

Time estimates live in :mod:`scan_core.explore.estimates`, calibrated on the workspace's
:func:`finished_runs` (:meth:`~scan_core.explore.estimates.Calibration.of_runs`).
"""
from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import scan_core

from ..config import AUTO, REFERENCE_CPU, REFINE_EPOCHS, Hardware, RunConfig
from ..data.artifacts import CorruptArtifact, load_json, read_json, save_json
from ..data.run_metrics import RunMetrics
from ..data.rundir import CLUSTER_STAGES, RunState, RunStatus, final_stage, read_status
from ..data.sources.common import DATA_DIR_ENV
from .refine import ImageLabels, request_refine
from .refine import undo_refine as refine_undone
from .workspace import Workspace, dataset_spec, run_name

LOCK_NAME = "training.lock"
HOLDER_NAME = "training.json"
CANCELLED = "cancelled by user"
_children: list[subprocess.Popen] = []  # launched jobs, polled so finished ones are reaped


class JobBusy(RuntimeError):
    """A training is already running in this workspace."""


@dataclass(frozen=True)
class TrainingConfig:
    """A run's ``config.json``: the settings it trains with, and how many processes train it together."""

    settings: RunConfig
    world_size: int = 1


@dataclass(frozen=True)
class FinalScores:
    """The scores of the cluster stage that is a run's result (``stage`` None, no score, before SCAN
    ends; a score is None when the images have no labels to score against)."""

    stage: str | None = None
    acc: float | None = None
    nmi: float | None = None
    ari: float | None = None


@dataclass(frozen=True)
class ListedRun:
    """One run of the workspace as :func:`list_runs` lists it: its name, dataset spec, K (``auto``
    or None before it is known), preset, job state (stage and error with it), final ACC and NMI
    (None before SCAN ends or without labels) and when it was created (unix time)."""

    name: str
    dataset: str
    clusters: int | str | None
    preset: str | None
    status: RunStatus
    acc: float | None
    nmi: float | None
    created: float

    @property
    def state(self) -> RunState:
        return self.status.state


def gpu_count() -> int:
    """The NVIDIA GPUs this process may use (the driver's list in ``/proc``, narrowed by
    ``CUDA_VISIBLE_DEVICES``), without loading CUDA."""
    try:
        present = len(os.listdir("/proc/driver/nvidia/gpus"))
    except OSError:
        return 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return present
    return min(present, len([device for device in visible.split(",") if device.strip() not in ("", "-1")]))


def planning_hardware() -> Hardware:
    """What the app plans a run for before Start: the reference GPU when this machine has one (the
    job then measures its own and plans again: :func:`scan_core.engine.device.measured_hardware`),
    else the reference CPU."""
    return Hardware("cuda") if gpu_count() else REFERENCE_CPU


def default_processes() -> int:
    """How many processes a job trains with unless told: one per GPU when there are several, else one."""
    return max(1, gpu_count())


def start(workspace: Workspace, dataset: str, clusters: int | str | None = None, name: str | None = None,
          preset: str = "auto", backbone: str | None = None, seed: int = 0,
          time_budget: float | None = None, processes: int = 1) -> Path:
    """Launch a new training run in the background; return its run directory. ``time_budget``:
    seconds the run is planned for (``--time-budget``; None: the preset's); ``processes``: ranks
    that train it together (torchrun on this machine; 1: a plain process). Its resumes and refines
    use as many.

    Raises :class:`JobBusy` when another training holds the workspace, ValueError for a folder
    outside the data roots or a bad K (the job itself validates everything else and reports it
    in ``status.json`` / ``train.log``).
    """
    if clusters is not None and clusters != AUTO and (not isinstance(clusters, int) or clusters < 2):
        raise ValueError(f"the number of clusters must be at least 2 or {AUTO!r}, got {clusters}")
    if not isinstance(processes, int) or processes < 1:
        raise ValueError(f"the number of processes must be a whole number of at least 1, got {processes!r}")
    spec = dataset_spec(workspace, dataset)
    args = ["--dataset", spec, "--preset", preset, "--seed", str(int(seed))]
    if clusters is not None:
        args += ["--clusters", AUTO if clusters == AUTO else str(int(clusters))]
    if backbone:
        args += ["--backbone", backbone]
    if time_budget is not None:
        if not time_budget > 0:
            raise ValueError(f"the time budget must be positive seconds, got {time_budget}")
        args += ["--time-budget", str(float(time_budget))]
    with _training_lock(workspace) as lock:
        run_dir = workspace.new_run_dir(name or f"{Path(spec).stem}-{time.strftime('%Y%m%d-%H%M%S')}")
        save_json(run_dir / "job.json", {"dataset": spec, "clusters": clusters, "preset": preset,
                                         "backbone": backbone, "seed": seed, "time_budget": time_budget,
                                         "processes": processes, "created": time.time()})
        _launch(workspace, lock, run_dir, args)
    return run_dir


def resumable(run_dir: Path, state: RunState) -> bool:
    """Whether a run stopped in ``state`` can be resumed: a cancelled or interrupted one can, a failed
    one only when its job got past the checks and wrote its ``config.json`` (a run refused for its
    settings would fail the same way again)."""
    return state in (RunState.CANCELLED, RunState.INTERRUPTED) or (Path(run_dir) / "config.json").exists()


def resume(workspace: Workspace, run_dir: Path) -> None:
    """Continue an interrupted, cancelled or failed run from its last checkpoint."""
    run_dir = workspace.own_run(run_dir)
    state = job_state(workspace, run_dir).state
    if state.working or state == RunState.FINISHED:
        raise ValueError(f"{run_dir.name} is {state}; only a stopped run can be resumed")
    if not resumable(run_dir, state):
        raise ValueError(f"{run_dir.name} never started training (its settings were refused); start a new run")
    dataset = (read_json(run_dir / "config.json") or read_json(run_dir / "job.json")).get("dataset")
    if not dataset:
        raise ValueError(f"{run_dir.name} records no dataset; start a new run instead")
    with _training_lock(workspace) as lock:
        _launch(workspace, lock, run_dir, ["--dataset", dataset])


def refine(workspace: Workspace, run_dir: Path, epochs: int = REFINE_EPOCHS) -> ImageLabels:
    """Refine the trained run in the background with its curation's image labels
    (:func:`scan_core.explore.refine.request_refine`: ValueError when it cannot); return them.
    JobBusy when another training holds the workspace."""
    run_dir = workspace.own_run(run_dir)
    with _training_lock(workspace) as lock:
        labels = request_refine(run_dir, epochs)
        _launch(workspace, lock, run_dir, ["--dataset", read_json(run_dir / "config.json")["dataset"]])
    return labels


def rename_run(workspace: Workspace, run_dir: Path, name: str) -> Path:
    """Give a run that is not training another name (:func:`run_name`); return its new directory.
    ValueError while it trains, or when the name is taken."""
    run_dir = workspace.own_run(run_dir)
    _not_training(workspace, run_dir, "renamed")
    target = workspace.runs / run_name(name)
    if target.exists():
        raise ValueError(f"a run named {target.name} already exists")
    run_dir.rename(target)
    return target


def delete_run(workspace: Workspace, run_dir: Path) -> Path:
    """Take a run that is not training out of the workspace: it is moved to ``WORKSPACE/trash/``
    (moved back into ``runs/``, it is a run again); return where it went. ValueError while it trains."""
    run_dir = workspace.own_run(run_dir)
    _not_training(workspace, run_dir, "deleted")
    trash = workspace.trash
    trash.mkdir(exist_ok=True)
    target = trash / f"{run_dir.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    suffix = 2
    while target.exists():
        target, suffix = trash / f"{run_dir.name}-{time.strftime('%Y%m%d-%H%M%S')}-{suffix}", suffix + 1
    run_dir.rename(target)
    return target


def _not_training(workspace: Workspace, run_dir: Path, what: str) -> None:
    """ValueError while ``run_dir`` trains (a finished run whose process is still exiting does not)."""
    if job_state(workspace, run_dir).state.working:
        raise ValueError(f"{run_dir.name} is training: cancel it or wait for it to end before it is {what}")


def undo_refine(workspace: Workspace, run_dir: Path) -> str:
    """Go back to the run's clusters before its refine (:func:`scan_core.explore.refine.undo_refine`);
    return the stage that is its result again. JobBusy while a training holds the workspace."""
    run_dir = workspace.own_run(run_dir)
    with _training_lock(workspace):
        return refine_undone(run_dir)


def cancel(workspace: Workspace, run_dir: Path) -> bool:
    """Ask the run's training processes to stop (SIGTERM to the job's process group: it records
    ``cancelled``); False when it is not running. The request is noted in ``job.json``, so that a run
    of several ranks reads as cancelled even when rank 0 saw another rank stop first."""
    run_dir = workspace.own_run(run_dir)
    if active_run(workspace) != run_dir:
        return False
    job = read_json(run_dir / "job.json")
    pid = job.get("pid")
    save_json(run_dir / "job.json", {**job, "cancelled": time.time()})
    try:
        os.killpg(int(pid), signal.SIGTERM)
    except (ProcessLookupError, TypeError, ValueError):
        return False
    return True


def active_run(workspace: Workspace) -> Path | None:
    """The run directory whose training holds the workspace lock, or None when none runs."""
    _reap()
    descriptor = os.open(workspace.home / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            return Path(load_json(workspace.home / HOLDER_NAME)["run_dir"])
        except (FileNotFoundError, CorruptArtifact, KeyError):
            return None
    finally:
        os.close(descriptor)  # closing drops our lock if we took it
    return None


def job_state(workspace: Workspace, run_dir: Path) -> RunStatus:
    """``status.json`` as :func:`scan_core.data.rundir.read_status` reads it (which alone decides
    whether a run's process died), plus the job's own view, the one every part of the app shows.

    A status written since the latest launch is the job's state, also while its process is still
    exiting (a finished or cancelled run never reads ``starting`` again). Before the launched
    process writes one (none yet, or the previous attempt's), the run is ``starting`` while the
    process lives, and afterwards ``failed`` with the log's last line (or ``cancelled``, when the
    user cancelled it while it was loading its images)."""
    run_dir = Path(run_dir)
    status = read_status(run_dir)
    job = read_json(run_dir / "job.json")
    if status.state == RunState.FAILED and (job.get("cancelled") or 0) >= (job.get("launched") or float("inf")):
        return replace(status, state=RunState.CANCELLED, error=CANCELLED)  # a rank stopped by the cancel itself
    if _written_since_launch(job, status):
        return status
    if active_run(workspace) == run_dir.resolve():
        return replace(status, state=RunState.STARTING, stage="images", error=None)
    reason = last_log_line(run_dir)
    if reason.startswith("cancelled"):  # what the CLI prints on SIGTERM before any stage ran
        return replace(status, state=RunState.CANCELLED, error=CANCELLED)
    return replace(status, state=RunState.FAILED, error=reason or "the job did not start")


def _written_since_launch(job: dict, status: RunStatus) -> bool:
    """Whether ``status`` comes from the attempt launched last, by the run's ``job.json`` (any
    written status of a run that the app never launched, such as one trained on the command line)."""
    if status.state == RunState.NEW:
        return False
    launched = job.get("launched")
    return launched is None or (status.updated or 0) >= launched


def last_log_line(run_dir: Path) -> str:
    """The last non-empty line of the run's ``train.log`` (where a job that failed early wrote why)."""
    path = Path(run_dir) / "train.log"
    if not path.exists():
        return ""
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def run_config(run_dir: Path) -> TrainingConfig | None:
    """The run's ``config.json`` (None before the job has written it; ValueError when it is not a
    config, :meth:`scan_core.config.RunConfig.load`)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").exists():
        return None
    return TrainingConfig(RunConfig.load(run_dir), int(read_json(run_dir / "config.json").get("world_size") or 1))


def final_scores(metrics: RunMetrics) -> FinalScores:
    """The scores of the cluster stage that is a run's result (none before SCAN ends)."""
    stage = final_stage(metrics, tuple(stage for stage in CLUSTER_STAGES if stage in metrics))
    if stage is None:
        return FinalScores()
    record = metrics[stage]
    return FinalScores(stage, record.get("acc"), record.get("nmi"), record.get("ari"))


def list_runs(workspace: Workspace) -> list[ListedRun]:
    """Every run directory of the workspace, newest first (:class:`ListedRun`)."""
    rows = []
    for run_dir in workspace.runs.iterdir():
        if not (run_dir / "job.json").exists() and not (run_dir / "config.json").exists():
            continue
        config = read_json(run_dir / "config.json")  # as written: a listed run never fails on its settings
        job = read_json(run_dir / "job.json")
        final = final_scores(RunMetrics.load(run_dir))
        rows.append(ListedRun(run_dir.name, config.get("dataset") or job.get("dataset", "?"),
                              config.get("num_clusters") or job.get("clusters"), config.get("preset") or job.get("preset"),
                              job_state(workspace, run_dir), final.acc, final.nmi, job.get("created") or _created(run_dir)))
    return sorted(rows, key=lambda row: row.created, reverse=True)


def finished_runs(workspace: Workspace, runs: list[ListedRun] | None = None) -> list[Path]:
    """The workspace's finished runs, newest first; ``runs``: its :func:`list_runs`, when already listed."""
    return [workspace.runs / row.name for row in (list_runs(workspace) if runs is None else runs)
            if row.state == RunState.FINISHED]


# ---- internals -------------------------------------------------------------------------------
class _training_lock:
    """Context manager: the workspace lock taken without waiting (JobBusy when held)."""

    def __init__(self, workspace: Workspace):
        self.workspace = workspace
        self.descriptor = -1

    def __enter__(self) -> int:
        self.descriptor = os.open(self.workspace.home / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self.descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.descriptor)
            holder = active_run(self.workspace)
            raise JobBusy(f"a training is already running ({holder.name if holder else 'another run'}); "
                          "wait for it to finish or cancel it first") from None
        return self.descriptor

    def __exit__(self, *exc) -> None:
        os.close(self.descriptor)  # the child, if launched, keeps its own copy of the lock


def launcher(processes: int) -> list[str]:
    """The command that starts ``python -m scan_core`` as ``processes`` ranks on this machine
    (torchrun, :mod:`scan_core.engine.ranks`), or as one plain process."""
    if processes == 1:
        return [sys.executable, "-m", "scan_core"]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
            "-m", "scan_core"]


def _launch(workspace: Workspace, lock: int, run_dir: Path, args: list[str]) -> None:
    """Start the training process; ``launched`` is taken before it starts, so that every status
    it writes is newer (:func:`job_state`). It extracts and downloads into the workspace's data_dir."""
    processes = int(read_json(run_dir / "job.json").get("processes") or 1)
    command = [*launcher(processes), "train", *args, "--out", str(run_dir), "--quiet"]
    save_json(workspace.home / HOLDER_NAME, {"run_dir": str(run_dir.resolve())})
    launched = time.time()
    with open(run_dir / "train.log", "ab") as log:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                 pass_fds=(lock,), start_new_session=True,
                                 env={**os.environ, DATA_DIR_ENV: str(workspace.data_dir)},
                                 cwd=Path(scan_core.__file__).resolve().parent.parent)  # where -m finds it
    _children.append(child)
    save_json(run_dir / "job.json", {**read_json(run_dir / "job.json"), "pid": child.pid, "launched": launched})


def _created(run_dir: Path) -> float:
    """When a run the app did not launch was made: its images' record, written once by its first
    stage (the directory's own time changes whenever a file appears in it, a curation log say)."""
    images = run_dir / "images" / "imageset.json"
    return (images if images.exists() else run_dir).stat().st_mtime


def _reap() -> None:
    for child in list(_children):
        if child.poll() is not None:
            _children.remove(child)
