"""Training jobs for the app: one ``python -m scan_core train`` process at a time per workspace.

A job is a separate OS process in its own session, so it survives reruns of the Streamlit script,
a closed tab and a restart of the server; it talks to the app only through its run directory
(``status.json``, ``events.jsonl``, ``metrics.json``, ``train.log``). "One at a time" is an
exclusive ``flock`` on ``WORKSPACE/training.lock``: the launcher takes it without waiting (a second
start gets :class:`JobBusy`), hands the open descriptor to the child and closes its own copy, so
the lock is held exactly as long as the training process lives, even if it is killed.

A workspace (``$SCAN_EXPLORER_HOME``, default ``./workspace``) holds ``runs/``, ``uploads/`` and
the lock; folders typed in the UI must lie inside its data roots (``$SCAN_EXPLORER_DATA_ROOTS``,
``os.pathsep``-separated; default ``WORKSPACE/data`` and ``WORKSPACE/uploads``).
"""
from __future__ import annotations

import fcntl
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import scan_core

from ..data.artifacts import CorruptArtifact, load_json, save_json
from ..data.rundir import CLUSTER_STAGES, read_status
from ..data.sources import BUILTIN

HOME_ENV = "SCAN_EXPLORER_HOME"
ROOTS_ENV = "SCAN_EXPLORER_DATA_ROOTS"
LOCK_NAME = "training.lock"
HOLDER_NAME = "training.json"
RUN_NAME_MAX = 60
_children: list[subprocess.Popen] = []  # launched jobs, polled so finished ones are reaped


class JobBusy(RuntimeError):
    """A training is already running in this workspace."""


@dataclass(frozen=True)
class Workspace:
    """Where runs, uploads and the training lock live, and which folders the UI may read."""

    home: Path
    data_roots: tuple[Path, ...]

    @classmethod
    def from_env(cls) -> Workspace:
        home = Path(os.environ.get(HOME_ENV) or "workspace").expanduser().resolve()
        roots = [Path(p).expanduser() for p in os.environ.get(ROOTS_ENV, "").split(os.pathsep) if p]
        return cls.create(home, roots or None)

    @classmethod
    def create(cls, home: Path, data_roots: list[Path] | None = None) -> Workspace:
        home = Path(home).resolve()
        roots = data_roots if data_roots is not None else [home / "data", home / "uploads"]
        workspace = cls(home, tuple(Path(r).resolve() for r in roots))
        for folder in (workspace.runs, workspace.uploads):
            folder.mkdir(parents=True, exist_ok=True)
        return workspace

    @property
    def runs(self) -> Path:
        return self.home / "runs"

    @property
    def uploads(self) -> Path:
        return self.home / "uploads"

    def confined(self, text: str) -> Path:
        """The folder or zip ``text`` names, resolved (symlinks too) and checked to lie inside a
        data root; ValueError otherwise, so the UI cannot be used to read ``/etc``."""
        if not text.strip():
            raise ValueError("no folder given")
        path = Path(text.strip()).expanduser().resolve()
        if not any(path == root or root in path.parents for root in self.data_roots):
            roots = ", ".join(str(r) for r in self.data_roots)
            raise ValueError(f"{path} is outside the data roots ({roots}); set {ROOTS_ENV} to allow it")
        if not path.exists():
            raise ValueError(f"{path} does not exist")
        return path

    def new_run_dir(self, name: str) -> Path:
        """A fresh directory under ``runs/`` named after ``name`` (sanitised, made unique)."""
        base = run_name(name)
        candidate, suffix = self.runs / base, 2
        while candidate.exists():
            candidate, suffix = self.runs / f"{base}-{suffix}", suffix + 1
        candidate.mkdir(parents=True)
        return candidate


def run_name(text: str) -> str:
    """``text`` made safe as a directory name: letters, digits, ``._`` and single dashes; no leading dot."""
    name = re.sub(r"[^A-Za-z0-9._]+", "-", text).strip("-.")[:RUN_NAME_MAX].strip("-.")
    return name or "run"


def dataset_spec(workspace: Workspace, dataset: str) -> str:
    """A built-in dataset name as is (with an optional ``:split``), else a confined path."""
    if dataset.split(":")[0] in BUILTIN:
        return dataset
    return str(workspace.confined(dataset))


def start(workspace: Workspace, dataset: str, clusters: int | None = None, name: str | None = None,
          preset: str = "auto", backbone: str | None = None, seed: int = 0) -> Path:
    """Launch a new training run in the background; return its run directory.

    Raises :class:`JobBusy` when another training holds the workspace, ValueError for a folder
    outside the data roots or a bad K (the job itself validates everything else and reports it
    in ``status.json`` / ``train.log``).
    """
    if clusters is not None and clusters < 2:
        raise ValueError(f"the number of clusters must be at least 2, got {clusters}")
    spec = dataset_spec(workspace, dataset)
    args = ["--dataset", spec, "--preset", preset, "--seed", str(int(seed))]
    if clusters is not None:
        args += ["--clusters", str(int(clusters))]
    if backbone:
        args += ["--backbone", backbone]
    with _training_lock(workspace) as lock:
        run_dir = workspace.new_run_dir(name or f"{Path(spec).stem}-{time.strftime('%Y%m%d-%H%M%S')}")
        save_json(run_dir / "job.json", {"dataset": spec, "clusters": clusters, "preset": preset,
                                         "backbone": backbone, "seed": seed, "created": time.time()})
        _launch(workspace, lock, run_dir, args)
    return run_dir


def resume(workspace: Workspace, run_dir: Path) -> None:
    """Continue an interrupted, cancelled or failed run from its last checkpoint."""
    run_dir = _own_run(workspace, run_dir)
    state = job_state(workspace, run_dir)["state"]
    if state in ("running", "starting", "finished"):
        raise ValueError(f"{run_dir.name} is {state}; only a stopped run can be resumed")
    dataset = (_read(run_dir / "config.json") or _read(run_dir / "job.json")).get("dataset")
    if not dataset:
        raise ValueError(f"{run_dir.name} records no dataset; start a new run instead")
    with _training_lock(workspace) as lock:
        _launch(workspace, lock, run_dir, ["--dataset", dataset])


def cancel(workspace: Workspace, run_dir: Path) -> bool:
    """Ask the run's training process to stop (SIGTERM: it records ``cancelled``); False when it
    is not running."""
    run_dir = _own_run(workspace, run_dir)
    if active_run(workspace) != run_dir:
        return False
    pid = _read(run_dir / "job.json").get("pid")
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


def job_state(workspace: Workspace, run_dir: Path) -> dict:
    """``status.json`` as :func:`scan_core.data.rundir.read_status` reads it (which alone decides
    whether a run's process died), plus the job's own view: ``starting`` while the launched process
    loads images, and the log's last line when it died before writing any status."""
    run_dir = Path(run_dir)
    status = read_status(run_dir)
    if status["state"] != "running" and active_run(workspace) == run_dir.resolve():
        # launched (or resumed), not yet past loading
        return {**status, "state": "starting", "stage": status.get("stage") or "images", "error": None}
    if status["state"] == "new":
        return {**status, "state": "failed", "error": last_log_line(run_dir) or "the job did not start"}
    return status


def last_log_line(run_dir: Path) -> str:
    """The last non-empty line of the run's ``train.log`` (where a job that failed early wrote why)."""
    path = Path(run_dir) / "train.log"
    if not path.exists():
        return ""
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def read_metrics(run_dir: Path) -> dict:
    """The run's ``metrics.json`` (empty before its first stage ends)."""
    return _read(Path(run_dir) / "metrics.json")


def final_scores(metrics: dict) -> dict:
    """The metrics of the last cluster stage a run's ``metrics.json`` holds (empty before SCAN ends)."""
    return next((metrics[stage] for stage in reversed(CLUSTER_STAGES) if stage in metrics), {})


def list_runs(workspace: Workspace) -> list[dict]:
    """Every run directory of the workspace, newest first: id, dataset, K, state, metrics."""
    rows = []
    for run_dir in workspace.runs.iterdir():
        if not (run_dir / "job.json").exists() and not (run_dir / "config.json").exists():
            continue
        config = _read(run_dir / "config.json")
        job = _read(run_dir / "job.json")
        metrics = read_metrics(run_dir)
        final = final_scores(metrics)
        state = job_state(workspace, run_dir)
        rows.append({"run": run_dir.name, "dataset": config.get("dataset") or job.get("dataset", "?"),
                     "clusters": config.get("num_clusters") or job.get("clusters"),
                     "preset": config.get("preset") or job.get("preset"),
                     "state": state["state"], "stage": state.get("stage"), "error": state.get("error"),
                     "acc": final.get("acc"), "nmi": final.get("nmi"),
                     "created": job.get("created") or run_dir.stat().st_mtime})
    return sorted(rows, key=lambda row: row["created"], reverse=True)


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


def _launch(workspace: Workspace, lock: int, run_dir: Path, args: list[str]) -> None:
    command = [sys.executable, "-m", "scan_core", "train", *args, "--out", str(run_dir), "--quiet"]
    save_json(workspace.home / HOLDER_NAME, {"run_dir": str(run_dir.resolve())})
    with open(run_dir / "train.log", "ab") as log:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                 pass_fds=(lock,), start_new_session=True,
                                 cwd=Path(scan_core.__file__).resolve().parent.parent)  # where -m finds it
    _children.append(child)
    save_json(run_dir / "job.json", {**_read(run_dir / "job.json"), "pid": child.pid, "launched": time.time()})


def _reap() -> None:
    for child in list(_children):
        if child.poll() is not None:
            _children.remove(child)


def _own_run(workspace: Workspace, run_dir: Path) -> Path:
    run_dir = Path(run_dir).resolve()
    if run_dir.parent != workspace.runs or not any((run_dir / f).exists() for f in ("job.json", "config.json")):
        raise ValueError(f"{run_dir} is not a run of this workspace")
    return run_dir


def _read(path: Path) -> dict:
    try:
        return load_json(path)
    except (FileNotFoundError, CorruptArtifact):
        return {}
