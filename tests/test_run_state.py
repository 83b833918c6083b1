"""The typed run state the app reads (RunState, RunStatus, ListedRun, FinalScores, TrainingConfig),
checked against the raw ``status.json``, ``config.json`` and ``metrics.json`` of a real digits run."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from scan_core.config import RunConfig
from scan_core.data.run_metrics import RunMetrics
from scan_core.data.rundir import RunState, RunStatus
from scan_core.explore import jobs
from scan_core.explore.results import RunNotReady, RunResults
from scan_core.explore.workspace import Workspace


def raw(run_dir: Path, name: str) -> dict:
    return json.loads((run_dir / name).read_text())


def test_the_state_of_a_written_status_is_its_string():
    assert [state.value for state in RunState] == ["new", "starting", "running", "finished", "failed",
                                                   "cancelled", "interrupted"]
    assert json.dumps({"state": RunState.CANCELLED}) == '{"state": "cancelled"}'  # the file keeps its format
    assert {state for state in RunState if state.working} == {RunState.STARTING, RunState.RUNNING}
    assert {state for state in RunState if state.stopped} == {RunState.FAILED, RunState.CANCELLED,
                                                             RunState.INTERRUPTED}
    with pytest.raises(ValueError, match="no known state"):
        RunStatus.from_json({"state": "paused"})


def test_the_job_state_of_a_trained_run_is_its_status_json(home):
    run_dir = Workspace.create(home).runs / "digits"
    status = raw(run_dir, "status.json")
    state = jobs.job_state(Workspace.create(home), run_dir)
    assert state == RunStatus.from_json(status)
    assert state.state is RunState.FINISHED and status["state"] == "finished"
    assert (state.stage, state.error, state.updated) == (status["stage"], status["error"], status["updated"])
    assert list(state.completed) == status["completed"] and "selflabel" in state.completed


def test_a_listed_run_carries_its_files_values(home):
    ws = Workspace.create(home)
    run_dir = ws.runs / "digits"
    config, metrics = raw(run_dir, "config.json"), raw(run_dir, "metrics.json")
    final = metrics[metrics["final"]["stage"]]
    row = next(row for row in jobs.list_runs(ws) if row.name == "digits")
    assert (row.dataset, row.clusters, row.preset) == ("digits", 10, "digits") == (
        config["dataset"], config["num_clusters"], config["preset"])
    assert row.state is RunState.FINISHED and row.status == jobs.job_state(ws, run_dir)
    assert (row.acc, row.nmi) == (final["acc"], final["nmi"]) and 0.5 < row.acc <= 1.0
    assert row.created == (run_dir / "images" / "imageset.json").stat().st_mtime  # the app did not launch it
    scores = jobs.final_scores(RunMetrics.load(run_dir))
    assert (scores.stage, scores.acc, scores.nmi, scores.ari) == (metrics["final"]["stage"], final["acc"],
                                                                  final["nmi"], final["ari"])
    finished = jobs.finished_runs(ws)
    assert finished == jobs.finished_runs(ws, jobs.list_runs(ws)) and {run_dir, ws.runs / "nolabels"} <= set(finished)


def test_the_training_config_is_the_config_json(home, tmp_path):
    run_dir = Workspace.create(home).runs / "digits"
    config = raw(run_dir, "config.json")
    loaded = jobs.run_config(run_dir)
    assert loaded.world_size == config["world_size"] == 1
    settings = loaded.settings
    assert (settings.dataset, settings.num_clusters, settings.preset, settings.seed, settings.suggest_clusters,
            settings.head_input, settings.manifold_dims) == tuple(
        config[key] for key in ("dataset", "num_clusters", "preset", "seed", "suggest_clusters", "head_input",
                                "manifold_dims"))
    assert jobs.run_config(tmp_path) is None  # before the job has written it


def test_the_results_config_is_the_config_json(home, tmp_path):
    """Pages read a run's settings as a RunConfig; a config.json that is no config is a run not ready."""
    run_dir = Workspace.create(home).runs / "digits"
    config = raw(run_dir, "config.json")
    settings = RunResults.load(run_dir).config
    assert isinstance(settings, RunConfig)
    assert (settings.dataset, settings.num_clusters, settings.preset, settings.seed, settings.head_input,
            settings.manifold_dims, settings.scan.epochs) == (
        config["dataset"], config["num_clusters"], config["preset"], config["seed"], config["head_input"],
        config["manifold_dims"], config["scan"]["epochs"]) == ("digits", 10, "digits", 0, "hog", 10, 50)
    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    (broken / "config.json").write_text(json.dumps({**config, "num_clusters": 1}))
    with pytest.raises(RunNotReady, match="config.json.*--clusters must be at least 2"):
        RunResults.load(broken)
