"""Background training jobs: one at a time, survive their launcher, cancel, resume, confinement."""
from __future__ import annotations

import fcntl
import io
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from scan_core.data.artifacts import load_json, save_json
from scan_core.data.sources.common import DATA_DIR_ENV
from scan_core.explore import jobs
from scan_core.explore.workspace import HOME_ENV, ROOTS_ENV, RUN_NAME_MAX, Workspace, run_name

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def ws(tmp_path) -> Workspace:
    """A fresh workspace; a job a failing test leaves behind is killed at the end."""
    workspace = Workspace.create(tmp_path / "home")
    yield workspace
    active = jobs.active_run(workspace)
    if active is not None:
        os.killpg(load_json(active / "job.json")["pid"], signal.SIGKILL)


def stage_running(run_dir: Path, stage: str) -> bool:
    try:
        status = load_json(run_dir / "status.json")
    except (FileNotFoundError, ValueError, RuntimeError):
        return False
    return status.get("stage") == stage and status.get("state") == "running"


@pytest.mark.parametrize("text, expected", [
    ("My run", "My-run"), ("../../etc/passwd", "etc-passwd"), ("  ", "run"), (".hidden", "hidden"),
    ("a/b\\c;rm -rf $HOME", "a-b-c-rm-rf-HOME"), ("x" * 200, "x" * RUN_NAME_MAX), ("é✓", "é"), ("✓", "run"),
    ("Clip art for my Étude — 2,000 stamps", "Clip-art-for-my-Étude-2-000-stamps"), ("E\u0301tude", "Étude"),
])
def test_run_names_are_sanitised(text, expected):
    assert run_name(text) == expected


def test_new_run_dirs_are_unique_and_inside_runs(ws):
    first, second = ws.new_run_dir("../demo"), ws.new_run_dir("../demo")
    assert first != second and first.parent == ws.runs == second.parent


def test_folders_are_confined_to_the_data_roots(ws, tmp_path):
    inside = ws.data_roots[0] / "cats"
    inside.mkdir(parents=True)
    assert ws.confined(str(inside)) == inside.resolve()
    escape = ws.data_roots[0] / "escape"
    escape.symlink_to("/etc")
    for text in ("/etc", str(escape), str(ws.data_roots[0] / ".." / ".." / "etc"), ""):
        with pytest.raises(ValueError, match="outside the data roots|no folder"):
            ws.confined(text)
    with pytest.raises(ValueError, match="does not exist"):
        ws.confined(str(ws.data_roots[0] / "missing"))
    with pytest.raises(ValueError, match="outside the data roots"):
        jobs.start(ws, "/etc", 2)


def test_environment_sets_home_and_roots(tmp_path, monkeypatch):
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "h"))
    monkeypatch.setenv(ROOTS_ENV, os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")]))
    ws = Workspace.from_env()
    assert ws.home == (tmp_path / "h").resolve() and ws.runs.is_dir()
    assert ws.data_roots == ((tmp_path / "a").resolve(), (tmp_path / "b").resolve())


def test_a_job_runs_to_the_end_and_a_second_start_is_refused(ws, wait_for):
    run_dir = jobs.start(ws, "digits", 10, name="first", preset="tiny")
    assert jobs.active_run(ws) == run_dir.resolve()
    with pytest.raises(jobs.JobBusy, match="first"):
        jobs.start(ws, "digits", 10, name="second", preset="tiny")
    assert not (ws.runs / "second").exists()
    wait_for(lambda: jobs.job_state(ws, run_dir).state == "finished")
    wait_for(lambda: jobs.active_run(ws) is None, timeout=60)  # the process exits after it wrote "finished"
    rows = jobs.list_runs(ws)
    assert [r.name for r in rows] == ["first"] and rows[0].state == "finished"
    assert rows[0].acc is not None and rows[0].clusters == 10


def test_a_bad_request_fails_with_the_reason(ws, wait_for):
    run_dir = jobs.start(ws, "digits", 5000, name="too-many", preset="tiny")
    state = wait_for(lambda: (s := jobs.job_state(ws, run_dir)).state not in ("starting", "running") and s)
    assert state.state == "failed" and "5000 clusters exceed the 1797 images" in state.error


def test_only_one_of_two_simultaneous_starts_runs(ws, wait_for):
    code = ("import sys; from scan_core.explore import jobs; from scan_core.explore.workspace import Workspace\n"
            "ws = Workspace.create(sys.argv[1])\n"
            "try:\n    jobs.start(ws, 'digits', 10, name=sys.argv[2], preset='tiny'); print('started')\n"
            "except jobs.JobBusy: print('busy')")
    launchers = [subprocess.Popen([sys.executable, "-c", code, str(ws.home), f"race{i}"], cwd=ROOT,
                                  stdout=subprocess.PIPE, text=True) for i in range(2)]
    outcomes = sorted(p.communicate(timeout=60)[0].strip() for p in launchers)
    assert outcomes == ["busy", "started"]
    active = jobs.active_run(ws)
    assert active is not None
    wait_for(lambda: jobs.active_run(ws) is None)


def test_the_job_outlives_its_launcher(ws, wait_for):
    """A Streamlit server restart: the launching process exits, the job goes on."""
    code = ("import sys; from scan_core.explore import jobs; from scan_core.explore.workspace import Workspace\n"
            "ws = Workspace.create(sys.argv[1])\n"
            "print(jobs.start(ws, 'digits', 10, name='orphan', preset='tiny'))")
    run_dir = Path(subprocess.run([sys.executable, "-c", code, str(ws.home)], cwd=ROOT, check=True,
                                  capture_output=True, text=True, timeout=60).stdout.strip())
    assert jobs.active_run(ws) == run_dir  # the launcher is gone, the job still holds the lock
    wait_for(lambda: jobs.job_state(ws, run_dir).state == "finished")


def test_cancel_then_resume(ws, wait_for):
    run_dir = jobs.start(ws, "digits", 10, name="cancel-me", preset="digits")
    wait_for(lambda: stage_running(run_dir, "scan"), every=0.05)
    assert jobs.cancel(ws, run_dir)
    state = wait_for(lambda: (s := jobs.job_state(ws, run_dir)).state not in ("running", "starting") and s)
    assert state.state == "cancelled" and state.error == "cancelled by user"
    wait_for(lambda: jobs.active_run(ws) is None, timeout=60)  # the process exits after it wrote "finished"
    assert not jobs.cancel(ws, run_dir)  # nothing left to cancel
    jobs.resume(ws, run_dir)
    with pytest.raises(ValueError, match="only a stopped run"):
        jobs.resume(ws, run_dir)
    wait_for(lambda: jobs.job_state(ws, run_dir).state == "finished", timeout=300)


def test_cancel_stops_every_rank_of_a_two_process_job(ws, wait_for):
    from scan_core.data.rundir import process_alive
    run_dir = jobs.start(ws, "digits", 10, name="two-cancel", preset="digits", processes=2)
    peers = wait_for(lambda: stage_running(run_dir, "scan") and load_json(run_dir / "status.json")["ranks"],
                     timeout=300, every=0.05)
    assert jobs.cancel(ws, run_dir)
    wait_for(lambda: jobs.active_run(ws) is None, timeout=90)  # the launcher ends once every rank has
    state = jobs.job_state(ws, run_dir)
    assert state.state == "cancelled" and state.error == "cancelled by user"
    assert not any(process_alive(peer["pid"], peer["pid_start"]) for peer in peers)
    assert jobs.resumable(run_dir, state.state)


def test_the_gpus_a_job_may_use_are_the_drivers_narrowed_by_cuda_visible_devices(ws, monkeypatch):
    monkeypatch.setattr(jobs.os, "listdir", lambda path: ["0000:01:00.0", "0000:02:00.0", "0000:03:00.0"]
                        if path == "/proc/driver/nvidia/gpus" else [])
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert jobs.gpu_count() == 3 and jobs.default_processes() == 3
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,2")
    assert jobs.gpu_count() == 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert jobs.gpu_count() == 0 and jobs.default_processes() == 1
    with pytest.raises(ValueError, match="processes must be a whole number of at least 1"):
        jobs.start(ws, "digits", processes=0)


def test_a_killed_job_shows_as_interrupted_and_releases_the_lock(ws, wait_for):
    run_dir = jobs.start(ws, "digits", 10, name="killed", preset="digits")
    wait_for(lambda: stage_running(run_dir, "scan"), every=0.05)
    os.killpg(load_json(run_dir / "job.json")["pid"], signal.SIGKILL)
    wait_for(lambda: jobs.active_run(ws) is None, timeout=60)  # the process exits after it wrote "finished"
    state = jobs.job_state(ws, run_dir)
    assert state.state == "interrupted" and "ended unexpectedly" in state.error
    assert "pretext" in state.completed


def test_resume_refuses_foreign_directories(ws, tmp_path):
    with pytest.raises(ValueError, match="not a run of this workspace"):
        jobs.resume(ws, tmp_path)


def test_the_lock_is_an_flock_other_tools_can_see(ws):
    """A holder of the lock (here: this test) blocks starts with a clear message."""
    descriptor = os.open(ws.home / jobs.LOCK_NAME, os.O_RDWR | os.O_CREAT)
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    try:
        with pytest.raises(jobs.JobBusy, match="already running"):
            jobs.start(ws, "digits", 10, preset="tiny")
    finally:
        os.close(descriptor)


def test_relative_folders_are_looked_up_in_each_data_root_in_turn(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    ws = Workspace.create(tmp_path / "home", [first, second])
    (second / "cats").mkdir(parents=True)
    assert ws.confined("cats") == (second / "cats").resolve()  # never ./cats of the working directory
    (first / "cats").mkdir(parents=True)
    assert ws.confined("cats") == (first / "cats").resolve()  # the first root that has it
    with pytest.raises(ValueError, match="does not exist in any data root"):
        ws.confined("dogs")
    with pytest.raises(ValueError, match="outside the data roots"):
        ws.confined("../../etc")


def hold_lock_for(ws: Workspace, run_dir: Path) -> int:
    """Take the workspace lock for ``run_dir`` as its training process would (here: this test)."""
    descriptor = os.open(ws.home / jobs.LOCK_NAME, os.O_RDWR | os.O_CREAT)
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    save_json(ws.home / jobs.HOLDER_NAME, {"run_dir": str(run_dir.resolve())})
    return descriptor


def test_a_status_written_since_the_launch_is_shown_while_the_process_exits(ws):
    run_dir = ws.new_run_dir("ending")
    launched = time.time()
    save_json(run_dir / "job.json", {"dataset": "digits", "launched": launched})
    descriptor = hold_lock_for(ws, run_dir)
    try:
        assert jobs.job_state(ws, run_dir).state == "starting"  # no status yet
        for state, error in (("finished", None), ("cancelled", "cancelled by user"), ("failed", "boom")):
            save_json(run_dir / "status.json", {"state": state, "error": error, "updated": launched + 1})
            assert (jobs.job_state(ws, run_dir).state, jobs.job_state(ws, run_dir).error) == (state, error)
        save_json(run_dir / "status.json", {"state": "cancelled", "error": "cancelled by user",
                                            "updated": launched - 60})  # the attempt before this resume
        assert jobs.job_state(ws, run_dir).state == "starting"
    finally:
        os.close(descriptor)
    (run_dir / "train.log").write_text("error: no such dataset\n")  # it died before writing a status
    state = jobs.job_state(ws, run_dir)
    assert (state.state, state.error) == ("failed", "error: no such dataset")
    (run_dir / "train.log").write_text("cancelled: run the same command again (--out x) to resume\n")
    assert jobs.job_state(ws, run_dir).state == "cancelled"  # cancelled while loading: no failure


def test_a_job_extracts_its_zip_into_the_workspace(ws, wait_for, monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "user-cache"))
    assert Workspace.from_env().data_dir == (tmp_path / "user-cache").resolve()  # the user's choice wins
    assert ws.data_dir == ws.home / "cache"
    upload = ws.uploads / "dots.zip"
    with zipfile.ZipFile(upload, "w") as archive:
        for i in range(30):
            image = io.BytesIO()
            Image.new("L", (12, 12), 8 * i if i % 2 else 255 - 8 * i).save(image, format="PNG")
            archive.writestr(f"dots/{'dark' if i % 2 else 'light'}/{i}.png", image.getvalue())
    run_dir = jobs.start(ws, str(upload), 2, name="dots", preset="tiny")
    wait_for(lambda: jobs.job_state(ws, run_dir).state not in ("starting", "running"))
    assert jobs.job_state(ws, run_dir).state == "finished", jobs.last_log_line(run_dir)
    assert len(list((ws.data_dir / "zips").iterdir())) == 1
    assert not (tmp_path / "user-cache").exists()
    wait_for(lambda: jobs.active_run(ws) is None, timeout=60)  # the process exits after it wrote "finished"


