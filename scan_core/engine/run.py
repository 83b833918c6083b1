"""A run: every stage of :data:`scan_core.data.rundir.STAGES` on one dataset, written into a run
directory, resumable.

Each stage (one module in :mod:`scan_core.engine.stages`) writes its artifacts atomically, then
the run records it in ``status.json`` under ``completed``. Running again on the same directory
skips every completed stage whose artifacts load back intact, and redoes the first one that is
missing or corrupt and everything after it. Training stages also save a checkpoint after every
epoch (``checkpoints/<stage>.pt``, deleted when the stage completes), so that a killed run
continues within the stage from its last finished epoch; an event ``resumed`` with ``epoch`` says
so. Whatever stops a run is recorded in ``status.json``; :func:`~scan_core.data.rundir.read_status`
reads it.

Under ``torchrun`` every rank executes the run (:mod:`scan_core.engine.ranks`): the training stages
on all of them, the others on rank 0 while the rest wait and then load its artifacts. ``config.json``
records the ``world_size`` of the latest attempt, ``status.json`` its ``ranks``; a run resumes with
any number of ranks.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from ..config import RunConfig
from ..data.artifacts import CorruptArtifact, save_json
from ..data.images import ImageSet
from ..data.run_metrics import RunMetrics
from ..data.rundir import STAGE_NAMES, RunState, Stage, planned_stages, process_start, stored_status
from ..data.sources import load_source
from ..method.distributed import alone, world
from ..presets import check_preset, plan_config
from . import ranks
from .cancel import Cancelled, recording_the_stop
from .context import RunContext
from .device import measured_hardware, resolve_device, versions
from .foundation import with_foundation
from .progress import Progress
from .threads import ThreadGovernor


def implementation(stage: Stage):
    """The module that runs and loads ``stage``: ``scan_core.engine.stages.<name>``."""
    return importlib.import_module(f"{__package__}.stages.{stage.name}")


def check_writable(run_dir: Path) -> None:
    """Create ``run_dir`` if needed and write a scratch file there; ValueError if that fails."""
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=run_dir):
            pass
    except OSError as error:
        raise ValueError(f"cannot write to {run_dir}: {error.strerror or error}") from error


class Run:
    """One run directory; :meth:`execute` runs (or resumes) every stage."""

    def __init__(self, run_dir: Path, config: RunConfig, show_bar: bool = True,
                 images: ImageSet | None = None):
        """``images``: the source, when already loaded (the images stage saves it, else loads it)."""
        self.dir = Path(run_dir)
        self.config = config
        self.rank, self.world_size = world()
        self.peers = ranks.peers()
        self.threads = ThreadGovernor(cores=ranks.local_cores())
        self.context = RunContext(self.dir, config, resolve_device(config.device),
                                  Progress(self.dir, show_bar=show_bar and self.rank == 0, on_step=self.threads.adjust),
                                  source=images)
        self._process = {"pid": os.getpid(), "pid_start": process_start(os.getpid()),
                         "ranks": ranks.records(self.peers) if self.world_size > 1 else None}

    def _set_status(self, **fields) -> None:
        status = {**stored_status(self.dir), **fields, **self._process, "updated": time.time()}
        save_json(self.dir / "status.json", status)

    def _completed(self) -> list[str]:
        """The leading stages recorded as completed whose artifacts are all present and load back
        (into the context)."""
        recorded, done = stored_status(self.dir)["completed"], []
        for stage in planned_stages(self.config.to_dict(), self.dir):
            if stage.name not in recorded or not all((self.dir / name).exists() for name in stage.artifacts):
                break
            try:
                implementation(stage).load(self.context)
            except (CorruptArtifact, FileNotFoundError, KeyError, RuntimeError, ValueError):
                break
            done.append(stage.name)
        return done

    def execute(self) -> RunMetrics:
        """Run every stage not yet completed; return its ``metrics.json``.

        Whatever stops it is recorded in ``status.json`` (``cancelled`` for :class:`Cancelled`,
        ``interrupted`` for KeyboardInterrupt, else ``failed``) and raised again.
        """
        save_json(self.dir / "config.json", {**self.config.to_dict(), "versions": versions(),
                                             "world_size": self.world_size})
        completed = self._completed()
        self._set_status(state=RunState.RUNNING, stage=None, completed=completed, error=None, started=time.time())
        stages = [stage for stage in planned_stages(self.config.to_dict(), self.dir) if stage.name not in completed]
        for stage in stages[1:]:  # their inputs are about to be recomputed: saved epochs are stale
            self.context.checkpoint(stage.name).clear()
        ranks.barrier()  # every rank has read what it resumes from before rank 0 writes again
        progress = self.context.progress
        try:
            for stage in stages:
                self._set_status(stage=stage.name)
                self.threads.adjust()
                progress.start(stage.name)
                torch.manual_seed(self.config.seed + STAGE_NAMES.index(stage.name))
                self.context.started = time.time()
                self._run_stage(stage)
                self.context.checkpoint(stage.name).clear()
                progress.end()
                completed.append(stage.name)
                self._set_status(completed=completed)
                ranks.barrier()  # what rank 0 wrote is on disk before any rank reads it
                if self.rank:  # the other ranks go on from rank 0's results
                    implementation(stage).load(self.context)
        except BaseException as error:
            with recording_the_stop():
                outcome, message = _outcome(error, ranks.stopped(self.peers), self.world_size)
                progress.close_bar()
                progress.emit("error", state=outcome, error=message)
                self._set_status(state=outcome, error=message)
            raise
        self._set_status(state=RunState.FINISHED, stage=None)
        return self.context.metrics()

    def _run_stage(self, stage: Stage) -> None:
        """Run ``stage`` on every rank when it trains, else on rank 0 alone while the others wait."""
        if stage.trains or self.rank == 0:
            with contextlib.nullcontext() if stage.trains else alone():
                implementation(stage).run(self.context)


def _outcome(error: BaseException, stopped: Sequence[ranks.Peer] = (), world_size: int = 1) -> tuple[RunState, str]:
    """The state a run ends in when ``error`` stops it, and the message recorded with it; a rank
    that is gone (``stopped``) is what failed, unless the user interrupted the run."""
    if stopped and not isinstance(error, KeyboardInterrupt):
        gone = ", ".join(peer.describe(world_size) for peer in stopped)
        return RunState.FAILED, (f"{gone} stopped (killed or crashed: its log says why); the run is resumable, "
                          f"with any number of processes; here: {type(error).__name__}: {error}")
    if isinstance(error, Cancelled):
        return RunState.CANCELLED, "cancelled by user"
    if isinstance(error, KeyboardInterrupt):
        return RunState.INTERRUPTED, "interrupted by the user (SIGINT)"
    return RunState.FAILED, f"{type(error).__name__}: {error}"


def train_run(run_dir: Path, dataset: str | None = None, num_clusters: int | str | None = None,
              preset: str = "auto", show_bar: bool = True, **overrides) -> RunMetrics:
    """Start or resume the run in ``run_dir``; return its metrics (:class:`~scan_core.data.run_metrics.RunMetrics`).

    A directory with a ``config.json`` resumes with that config (``dataset`` must match when
    given; the other arguments are ignored). A new run is validated first (dataset, preset,
    clusters, parameters: :func:`scan_core.presets.plan_config`), then ``run_dir`` must be writable; either failing
    raises ValueError before anything is written into ``run_dir``.
    """
    run_dir = Path(run_dir)
    planned = ranks.on_rank_zero(lambda: _planned(run_dir, dataset, num_clusters, preset, overrides, show_bar))
    config, images = planned or (None, None)
    config = ranks.share(config)  # under torchrun, rank 0's plan is every rank's
    run = Run(run_dir, config, show_bar=show_bar, images=images)
    del images  # the images stage saves them and goes on with the memory-mapped copy
    return run.execute()


def _planned(run_dir: Path, dataset: str | None, num_clusters: int | str | None, preset: str,
             overrides: dict, show_bar: bool = True) -> tuple[RunConfig, ImageSet | None]:
    """The config of the run in ``run_dir`` (stored, or planned for ``dataset``) and the images a new
    run loaded to plan it, a folder's written into the run's image shards as they were decoded;
    ``run_dir`` checked writable first. A refused new run leaves nothing behind (:func:`train_run`).
    A new ``auto`` run without a chosen backbone may fetch a foundation one first
    (:func:`~scan_core.engine.foundation.with_foundation`)."""
    if (run_dir / "config.json").exists():
        config = RunConfig.load(run_dir)
        if dataset is not None and dataset != config.dataset:
            raise ValueError(f"{run_dir} holds a run on {config.dataset!r}, not {dataset!r}; "
                             "use another --out directory")
        check_writable(run_dir)
        return config, None
    if dataset is None:
        raise ValueError(f"{run_dir} holds no run; give a dataset to start one")
    check_preset(preset)
    cache = run_dir / "images"
    made = next((path for path in (run_dir, cache) if not path.exists()), None)  # the folder this call makes
    check_writable(run_dir)
    try:  # a folder's images go into the run's shards as they are decoded
        images = load_source(dataset, image_size=overrides.get("image_size"), cache=cache)
        hardware = measured_hardware(resolve_device(overrides.get("device", "cpu")))
        plan = lambda: plan_config(images, dataset, num_clusters, preset, hardware, **overrides)
        config = plan()
        if config.preset == "auto" and overrides.get("backbone") is None:
            config = with_foundation(run_dir, config, images, hardware, plan, show_bar)
        return config, images
    except BaseException:  # refused: what this call made is removed, nothing else
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
        raise
