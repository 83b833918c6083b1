"""The same ``train`` command under ``torchrun`` with two gloo ranks on digits: it finishes, and only
rank 0 wrote into the run directory (every file opened for writing, renamed, created or removed by
any process is logged by an audit hook the test installs); killing rank 1 mid-stage ends the job
with a message naming it, and the run resumes from its checkpoint in one process."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from scan_core.data.artifacts import load_json
from scan_core.data.rundir import read_events, read_status, stored_status

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--dataset", "digits", "--quiet", "--selflabel-epochs", "2", "--no-umap"]

#: Imported by every Python process started with its folder on PYTHONPATH (torchrun's agent and its
#: ranks): logs "RANK EVENT PATH" for each write under WATCH_DIR (builtins.open / os.open in a
#: writing mode, rename / replace, mkdir, remove) to its own file, opened before the hook is set.
AUDIT_HOOK = '''
import os, sys
_watch, _log = os.environ.get("WATCH_DIR"), os.environ.get("WRITES_LOG")
if _watch and _log:
    _fd = os.open(f"{_log}.{os.getpid()}", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    _rank = os.environ.get("RANK", "launcher")
    _writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def _watched(path):
        return isinstance(path, (str, os.PathLike)) and os.path.abspath(os.fspath(path)).startswith(_watch)

    def _hook(event, args):
        if event == "open":
            path, mode, flags = args
            wrote = any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & _writing)
            paths = [path] if wrote else []
        elif event in ("os.rename", "os.remove", "os.mkdir", "os.rmdir"):
            paths = list(args[:2] if event == "os.rename" else args[:1])
        else:
            return
        for path in paths:
            if _watched(path):
                os.write(_fd, f"{_rank} {event} {os.fspath(path)}\\n".encode())

    sys.addaudithook(_hook)
'''


def torchrun(*args: str, env: dict | None = None, **popen) -> subprocess.Popen:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "scan_core", "train", *args]
    return subprocess.Popen(command, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **popen)


def test_two_ranks_train_digits_and_only_rank_0_writes(tmp_path):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(AUDIT_HOOK)
    run_dir = tmp_path / "run"
    log = tmp_path / "writes"
    job = torchrun(*TINY, "--scan-epochs", "6", "--out", str(run_dir),
                   env={"PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]),
                        "WATCH_DIR": str(run_dir), "WRITES_LOG": str(log)})
    out, err = job.communicate(timeout=600)
    assert job.returncode == 0, err.decode()[-3000:]
    assert read_status(run_dir).state == "finished"
    status = stored_status(run_dir)  # the ranks: as status.json lists them
    assert [peer["rank"] for peer in status["ranks"]] == [0, 1]
    assert len({peer["pid"] for peer in status["ranks"]}) == 2
    assert load_json(run_dir / "config.json")["world_size"] == 2
    writes = [line.split(" ", 2) for path in tmp_path.glob("writes.*") for line in path.read_text().splitlines()]
    writers = {rank for rank, _, _ in writes}
    assert writers == {"0"}, sorted({(rank, Path(path).name) for rank, _, path in writes if rank != "0"})[:20]
    written = {Path(path).name for _, event, path in writes if event == "os.rename"}
    assert {"features.npy", "neighbors.npy", "scan_probs.npy", "status.json", "metrics.json"} <= written
    metrics = load_json(run_dir / "metrics.json")
    # one process on this config: 0.77 after SCAN; two ranks draw other augmentations and mine on
    # the manifold of features embedded half by each rank: 0.73
    assert metrics[metrics["final"]["stage"]]["acc"] > 0.65
    assert out.decode().count("result:") == 1  # rank 0 alone prints the table


def test_a_killed_rank_is_named_and_the_run_resumes_in_one_process(tmp_path, wait_for):
    run_dir = tmp_path / "run"
    job = torchrun(*TINY, "--scan-epochs", "40", "--out", str(run_dir), start_new_session=True)
    try:
        def scan_checkpointed():
            status = stored_status(run_dir)
            return (status.get("stage") == "scan" and (run_dir / "checkpoints" / "scan.pt").exists()
                    and status.get("ranks"))

        peers = wait_for(scan_checkpointed, timeout=300, every=0.1, process=job, what="a SCAN epoch saved")
        victim = peers[1]
        os.kill(victim["pid"], signal.SIGKILL)
        job.communicate(timeout=120)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    assert job.returncode != 0
    status = read_status(run_dir)
    assert status.state == "failed" and status.stage == "scan"
    assert f"rank 1 of 2 (pid {victim['pid']} on " in status.error and "resumable" in status.error

    again = subprocess.run([sys.executable, "-m", "scan_core", "train", *TINY, "--out", str(run_dir)], cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = [event for event in read_events(run_dir) if event["kind"] == "resumed"]
    assert [event["stage"] for event in resumed] == ["scan"] and resumed[0]["epoch"] >= 1
    assert load_json(run_dir / "config.json")["world_size"] == 1
    assert read_status(run_dir).state == "finished"
    assert load_json(run_dir / "metrics.json")["scan"]["snapshot_epochs"][-1] == 40


def test_a_request_rank_0_refuses_ends_every_rank_with_its_message(tmp_path):
    job = torchrun(*TINY, "--clusters", "1", "--out", str(tmp_path / "run"))
    _, err = job.communicate(timeout=300)
    text = err.decode()
    assert job.returncode != 0
    assert "error: the number of clusters K must be at least 2, got 1" in text  # rank 0
    assert "error: rank 0 stopped: the number of clusters K must be at least 2, got 1" in text  # rank 1
    assert "scan_core/engine" not in text and "scan_core/cli.py" not in text  # no traceback of the ranks' own
    assert not (tmp_path / "run").exists()  # (torchrun's own report of the failed ranks follows their messages)


def test_two_launchers_meet_at_a_c10d_rendezvous_as_two_nodes(tmp_path):
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
                               "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "nodes",
                               "-m", "scan_core", "train", *TINY, "--scan-epochs", "4", "--out", str(tmp_path / "run")],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    for node in nodes:
        _, err = node.communicate(timeout=600)
        assert node.returncode == 0, err.decode()[-3000:]
    assert load_json(tmp_path / "run" / "config.json")["world_size"] == 2
    assert read_status(tmp_path / "run").state == "finished"
