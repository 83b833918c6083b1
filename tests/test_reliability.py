"""Reliability of a run: bad requests refused before anything is written, the per-run skip report,
cancel / interrupt / SIGKILL and resumption from checkpoints, disk full, unwritable run
directories, truncated artifacts, and no unpickling of anything a user supplies."""
import ast
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scan_core.cli import main
from scan_core.config import AugmentConfig, PretextConfig, RunConfig, ScanConfig, SelfLabelConfig
from scan_core.data.artifacts import Checkpoint, load_array, load_torch, save_json
from scan_core.data.images import ImageSet
from scan_core.data.rundir import INTERRUPTED, RunState, RunStatus, read_events, read_status, stored_status
from scan_core.engine.run import train_run
from scan_core.method.backbones import build_backbone
from scan_core.method.clustering import ClusterHeads, train_scan
from scan_core.method.pretext import SimCLRModel, train_simclr
from scan_core.presets import make_config

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "scan_core"


def digit_folder(root: Path, digits: ImageSet, count: int) -> Path:
    """``count`` distinct digits as PNG files directly in ``root`` (no labels)."""
    root.mkdir(parents=True)
    for i in range(count):
        Image.fromarray(digits.images[i, ..., 0]).save(root / f"{i:03d}.png")
    return root


def tiny_command(run_dir: Path, *extra: str) -> list[str]:
    """The CLI training command of a tiny digits run (8x8 images: a few seconds a stage)."""
    return [sys.executable, "-m", "scan_core", "train", "--dataset", "digits", "--clusters", "10",
            "--out", str(run_dir), "--preset", "tiny", "--image-size", "8", "--quiet", *extra]


def start(command: list[str]) -> subprocess.Popen:
    """Start ``command`` in the background with SIGINT at its default (a shell that runs the tests
    in the background would pass it on ignored, and Python would then never raise KeyboardInterrupt)."""
    return subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def stepping(run_dir: Path, stage: str) -> bool:
    """Whether ``stage`` has reported a training step (it is inside its loop)."""
    return any(e["kind"] == "step" and e["stage"] == stage for e in read_events(run_dir))


def assert_run_loads(run_dir: Path) -> None:
    """Every artifact of a finished run loads with the library's (pickle-free) readers."""
    images = ImageSet.load(run_dir / "images")
    for name in ("features", "neighbors", "scan_probs", "selflabel_probs"):
        assert len(load_array(run_dir / f"{name}.npy")) == len(images)
    for name in ("pretext", "scan", "selflabel"):
        assert load_torch(run_dir / f"{name}.pt")
    assert not any((run_dir / "checkpoints").glob("*")), "checkpoints are removed when stages finish"


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, digits):
    """A finished tiny run on a folder of 60 digits (a few seconds)."""
    base = tmp_path_factory.mktemp("small")
    run_dir = base / "run"
    train_run(run_dir, str(digit_folder(base / "folder", digits, 60)), 3, "tiny", show_bar=False)
    return run_dir


# ------------------------------------------------------------------ refused before anything starts

@pytest.mark.parametrize("args, message", [
    (["--clusters", "1"], "the number of clusters K must be at least 2, got 1"),
    (["--clusters", "5000"], "5000 clusters exceed the 1797 images of digits"),
    (["--dataset", "no-such-dataset"], "'no-such-dataset' is not a built-in dataset"),
    (["--pretext-epochs", "-1"], "pretext epochs (--pretext-epochs) must be at least 0, got -1"),
    (["--pretext-epochs", "0"], "pretext epochs 0 (no SimCLR) needs a pretrained backbone"),
    (["--time-budget", "-5"], "time_budget (--time-budget) must be 0 (none) or positive seconds, got -5.0"),
    (["--scan-epochs", "-3"], "scan epochs (--scan-epochs) must be at least 1, got -3"),
    (["--selflabel-epochs", "0"], "self-label epochs (--selflabel-epochs) must be at least 1, got 0"),
])
def test_cli_refuses_bad_requests_before_writing(tmp_path, capsys, args, message):
    parent = tmp_path / "runs"
    parent.mkdir()
    (parent / "keep.txt").write_text("already here")
    argv = ["train", "--dataset", "digits", "--clusters", "10", "--out", str(parent / "bad"), "--preset", "tiny"]
    for flag, value in zip(args[::2], args[1::2]):
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    assert main(argv) == 2
    assert f"error: {message}" in capsys.readouterr().err
    assert os.listdir(parent) == ["keep.txt"]


def test_unknown_preset_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--dataset", "digits", "--out", str(tmp_path / "cli"), "--preset", "huge"])
    assert exit_.value.code == 2 and "invalid choice: 'huge'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        train_run(tmp_path / "api", "digits", preset="huge")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("make, message", [
    (lambda: PretextConfig(epochs=-1), "pretext epochs .* at least 0, got -1"),
    (lambda: PretextConfig(batch_size=1), "pretext batch_size must be at least 2"),
    (lambda: ScanConfig(epochs=0), "scan epochs .* at least 1, got 0"),
    (lambda: ScanConfig(batch_size=0), "scan batch_size must be at least 1, got 0"),
    (lambda: RunConfig("digits", 1), "--clusters must be at least 2, got 1"),
    (lambda: SelfLabelConfig(batch_size=0), "self-label batch_size must be at least 1, got 0"),
    (lambda: make_config("digits", 10, 1797, 16, 1, preset="huge"), "unknown preset 'huge'"),
])
def test_invalid_parameters_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("make, message", [
    (lambda: RunConfig("digits", 10, neighbor_space="umap"), "neighbor_space must be one of features, pixels, fused, hog"),
    (lambda: RunConfig("digits", 10, device="tpu"), "device must be one of auto, cpu, cuda; got 'tpu'"),
    (lambda: make_config("digits", 10, 1797, 16, 1, scan={"epocs": 3}), "ScanConfig has no field.* epocs"),
    (lambda: make_config("digits", 10, 1797, 16, 1, heads=3), "RunConfig has no field.* heads"),
])
def test_options_are_checked_against_their_choices(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_missing_pretrained_weights_end_the_cli_with_a_message(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SCAN_EXPLORER_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("SCAN_EXPLORER_OFFLINE", "1")
    code = main(["train", "--dataset", "digits", "--out", str(tmp_path / "run"), "--preset", "tiny",
                 "--backbone", "resnet18-imagenet", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "error: resnet18-imagenet's weights are not on this machine and downloads are off" in err
    assert f"{tmp_path / 'weights'}" in err or "SCAN_EXPLORER_WEIGHTS/resnet18-f37072fd.pth" in err
    assert read_status(tmp_path / "run").state == "failed"  # resumable once the weights are there


def test_a_corrupt_run_file_ends_evaluate_with_a_message(tmp_path, capsys):
    (tmp_path / "metrics.json").write_text("{ not json")
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "invalid JSON" in capsys.readouterr().err


@pytest.mark.parametrize("count, clusters, message", [
    (1, None, "has 1 image: too few to suggest a number of clusters .* set the number of clusters K"),
    (1, 2, "2 clusters exceed the 1 image of"),
    (5, 10, "10 clusters exceed the 5 images of"),
    (15, 3, "has 15 images: too few for 20 neighbours each; need at least 21"),
])
def test_too_few_images_refused_before_writing(tmp_path, digits, count, clusters, message):
    folder = digit_folder(tmp_path / "few", digits, count)
    with pytest.raises(ValueError, match=message):
        train_run(tmp_path / "run", str(folder), clusters, "tiny", show_bar=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("kind", ["under a file", "read-only file system", "no permission"])
def test_unwritable_out_refused(tmp_path, capsys, kind):
    if kind == "under a file":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "run"
    elif kind == "read-only file system":
        out = Path("/sys/scan-explorer-test-run")
    elif os.geteuid() == 0:  # root writes into any directory; the kernel's own sysfs folders refuse it (EPERM)
        out = Path("/sys/kernel/scan-explorer-test-run")
    else:
        (tmp_path / "ro").mkdir(mode=0o555)
        out = tmp_path / "ro" / "run"
    assert main(["train", "--dataset", "digits", "--clusters", "10", "--out", str(out), "--preset", "tiny"]) == 2
    assert f"error: cannot write to {out}: " in capsys.readouterr().err
    assert not out.exists()


# ------------------------------------------------------------------ the skip report

def test_skipped_files_are_reported_per_run(tmp_path, digits, capsys):
    folder = digit_folder(tmp_path / "folder", digits, 40)
    (folder / "notes.png").write_text("not an image")
    (folder / "cut.png").write_bytes((folder / "000.png").read_bytes()[:60])
    shutil.copy(folder / "007.png", folder / "copy.png")
    run_dir = tmp_path / "run"
    assert main(["train", "--dataset", str(folder), "--clusters", "3", "--out", str(run_dir),
                 "--preset", "tiny", "--quiet"]) == 0
    assert f"skipped 3 files, see {run_dir / 'report.json'}" in capsys.readouterr().out
    report = json.loads((run_dir / "report.json").read_text())
    assert report["dataset"] == str(folder) and report["loaded"] == 40 and report["skipped"] == 3
    reasons = {entry["path"]: entry["reason"] for entry in report["skipped_files"]}
    assert reasons["copy.png"] == "duplicate of 007.png"
    assert reasons["notes.png"] == "not a readable image file"
    assert reasons["cut.png"].startswith("unreadable image")
    assert {"state", "stage", "completed", "error", "pid", "updated"} <= set(stored_status(run_dir))
    status = read_status(run_dir)
    assert status.state == "finished" and status.error is None and status.stage is None


# ------------------------------------------------------------------ status of dead processes

def write_status(run_dir: Path, **fields) -> None:
    save_json(run_dir / "status.json", {"state": "running", "stage": "scan", "completed": ["images"],
                                        "error": None, "updated": time.time(), **fields})


def own_start() -> int:
    return int(Path("/proc/self/stat").read_text().rpartition(")")[2].split()[19])


def test_read_status_of_a_new_directory(tmp_path):
    assert read_status(tmp_path) == RunStatus(RunState.NEW, stage=None, completed=(), error=None, updated=None)
    assert stored_status(tmp_path) == {"state": "new", "stage": None, "completed": [], "error": None,
                                       "pid": None, "updated": None}


def test_read_status_recognises_dead_and_recycled_processes(tmp_path):
    write_status(tmp_path, pid=os.getpid(), pid_start=own_start())
    assert read_status(tmp_path).state == "running"
    write_status(tmp_path, pid=os.getpid(), pid_start=own_start() - 1)   # pid reused by another process
    assert read_status(tmp_path).state == "interrupted"
    ended = subprocess.Popen(["true"])
    ended.wait()
    write_status(tmp_path, pid=ended.pid)
    assert replace(read_status(tmp_path), updated=None) == RunStatus(
        RunState.INTERRUPTED, stage="scan", completed=("images",), error=INTERRUPTED, updated=None)
    assert stored_status(tmp_path)["state"] == "running"  # the record itself is left as written
    zombie = subprocess.Popen(["sleep", "60"])                            # killed, not yet reaped
    zombie.kill()
    while Path(f"/proc/{zombie.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
        time.sleep(0.01)
    write_status(tmp_path, pid=zombie.pid)
    assert read_status(tmp_path).state == "interrupted"
    zombie.wait()


# ------------------------------------------------------------------ cancel, interrupt, SIGKILL

@pytest.mark.parametrize("signum, state, error, code", [
    (signal.SIGTERM, "cancelled", "cancelled by user", 143),
    (signal.SIGINT, "interrupted", "interrupted by the user (SIGINT)", 130),
])
def test_signal_ends_run_with_its_state(tmp_path, signum, state, error, code, wait_for):
    run_dir = tmp_path / "run"
    process = start(tiny_command(run_dir, "--pretext-epochs", "50"))
    wait_for(lambda: stepping(run_dir, "pretext"), timeout=180, every=0.05, process=process, what="a step of the pretext stage")
    process.send_signal(signum)
    assert process.wait(timeout=60) == code
    assert f"{state}: run the same command again" in process.stderr.read().decode()
    status = read_status(run_dir)
    assert (status.state, status.error, status.stage) == (state, error, "pretext")
    assert read_events(run_dir)[-1] | {"time": 0} == {"time": 0, "kind": "error", "stage": "pretext",
                                                      "state": state, "error": error}


# stage -> extra CLI flags that make it last 3-4 s on 2 cores (an epoch takes about 0.22, 0.017 and
# 0.002 s), so the kill lands inside it. With 2 pretext, 12 scan and 15 self-label epochs a stage
# could end between the poll that saw it and the kill.
KILL_CASES = {
    "pretext": ["--pretext-epochs", "15"],
    "scan": ["--scan-epochs", "200"],
    "selflabel": ["--selflabel-epochs", "1500"],
}


@pytest.mark.parametrize("stage", KILL_CASES)
def test_sigkill_in_a_stage_then_rerun_resumes(tmp_path, stage, wait_for):
    """SIGKILL during ``stage``; the same command again finishes from where the run was."""
    run_dir = tmp_path / "run"
    command = tiny_command(run_dir, *KILL_CASES[stage])
    process = start(command)
    checkpoint = run_dir / "checkpoints" / f"{stage}.pt"
    wait_for(checkpoint.exists, timeout=180, every=0.05, process=process, what=f"a checkpoint of {stage}")
    process.kill()
    process.wait()
    status = read_status(run_dir)
    assert (status.state, status.stage, status.error) == ("interrupted", stage, INTERRUPTED)
    earlier = sorted(p for p in run_dir.rglob("*.npy") if p.name != "feature_banks.npy")
    written = {p: p.stat().st_mtime_ns for p in earlier}
    events_before = len(read_events(run_dir))

    resumed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert read_status(run_dir).state == "finished"
    assert {p: p.stat().st_mtime_ns for p in earlier} == written        # finished stages not redone
    assert_run_loads(run_dir)
    events = read_events(run_dir)[events_before:]
    assert events[0] == events[0] | {"kind": "stage_start", "stage": stage}
    restarts = [e["epoch"] for e in events if e["kind"] == "resumed"]
    assert restarts and restarts[0] >= 1                              # not from epoch 0
    first = next((e for e in events if e["kind"] == "step"), None)  # self-labeling reports only batches it trains on
    assert first is not None or stage == "selflabel"
    if first is not None:
        assert first["step"] > restarts[0] * first["total"] // int(KILL_CASES[stage][1])


# ------------------------------------------------------------------ resuming inside a training loop

class StopAfter(Checkpoint):
    """A checkpoint that kills the loop (KeyboardInterrupt) once ``epochs`` epochs are saved."""

    def __init__(self, path: Path, epochs: int):
        super().__init__(path)
        self.epochs = epochs

    def save(self, epoch, *args, **kwargs) -> None:
        super().save(epoch, *args, **kwargs)
        if epoch == self.epochs:
            raise KeyboardInterrupt


def scan_training(checkpoint):
    """A small SCAN training on random features: ``(trained heads, result)``."""
    rng = np.random.default_rng(0)
    features = torch.as_tensor(rng.normal(size=(120, 8)), dtype=torch.float32)
    neighbors = np.stack([(np.arange(120) + d) % 120 for d in range(1, 6)], axis=1)
    torch.manual_seed(0)
    heads = ClusterHeads(8, 3, num_heads=2, hidden=16)
    config = ScanConfig(num_heads=2, hidden=16, epochs=4, batch_size=32)
    inputs = lambda index: features[index]
    snapshots = train_scan(heads, inputs, inputs, neighbors, config, checkpoint=checkpoint)
    assert [s.epoch for s in snapshots] == [2, 3, 4]   # epoch 2's from before the kill, when resumed
    return heads, np.concatenate([np.concatenate([s.losses.numpy(), s.clusters.numpy().ravel()]) for s in snapshots])


def simclr_training(checkpoint):
    """A small SimCLR training on random 8x8 images: ``(trained model, None)``."""
    images = np.random.default_rng(0).integers(0, 256, (40, 8, 8, 1), dtype=np.uint8)
    torch.manual_seed(0)
    model = SimCLRModel(build_backbone("small-cnn", 1, 2), out_dim=8)
    config = PretextConfig(epochs=3, batch_size=16)
    train_simclr(model, images, config, AugmentConfig(), torch.device("cpu"), checkpoint=checkpoint)
    return model, None


@pytest.fixture
def one_thread():
    """Tiny tensors: one thread is faster, and much faster on a machine shared with others."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("training", [scan_training, simclr_training])
def test_training_resumed_from_checkpoint_equals_uninterrupted(tmp_path, one_thread, training):
    reference, expected = training(None)
    with pytest.raises(KeyboardInterrupt):
        training(StopAfter(tmp_path / "stage.pt", epochs=2))
    resumed_at = []
    model, result = training(Checkpoint(tmp_path / "stage.pt", on_resume=resumed_at.append))
    assert resumed_at == [2]
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    if expected is not None:
        assert np.array_equal(result, expected)


# ------------------------------------------------------------------ disk full, damaged artifacts

@pytest.fixture
def disk_full_at_neighbors(monkeypatch):
    """``os.replace`` fails with ENOSPC for ``neighbors.npy`` (the disk fills there); returns the real
    ``os.replace``, to free the space."""
    real_replace = os.replace

    def full_at_neighbors(src, dst):
        if Path(dst).name == "neighbors.npy":
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", full_at_neighbors)
    return real_replace


def test_disk_full_fails_the_run_and_keeps_saved_artifacts(tmp_path, digits, monkeypatch, disk_full_at_neighbors):
    folder = digit_folder(tmp_path / "folder", digits, 60)
    run_dir = tmp_path / "run"
    with pytest.raises(OSError, match="neighbors.npy"):
        train_run(run_dir, str(folder), 3, "tiny", show_bar=False)
    status = read_status(run_dir)
    assert status.state == "failed" and status.stage == "neighbors"
    assert status.error == f"OSError: [Errno 28] cannot write {run_dir / 'neighbors.npy'}: No space left on device"
    assert not list(run_dir.rglob("*.tmp")) and not (run_dir / "neighbors.npy").exists()
    features = load_array(run_dir / "features.npy")
    assert load_torch(run_dir / "pretext.pt") and len(features) == len(ImageSet.load(run_dir / "images"))
    written = (run_dir / "features.npy").stat().st_mtime_ns

    monkeypatch.setattr(os, "replace", disk_full_at_neighbors)  # space freed: run it again
    train_run(run_dir, show_bar=False)
    assert read_status(run_dir).state == "finished"
    assert (run_dir / "features.npy").stat().st_mtime_ns == written
    assert_run_loads(run_dir)


def test_a_sigterm_while_a_failure_is_recorded_does_not_cut_the_record_short(tmp_path, digits, monkeypatch,
                                                                             disk_full_at_neighbors):
    """Under torchrun, a rank that dies makes the agent SIGTERM the others while they record the
    failure: the record is still written, and the failure (not the signal) is what is raised."""
    from scan_core.engine import ranks
    from scan_core.engine.cancel import sigterm_cancels
    folder = digit_folder(tmp_path / "folder", digits, 60)
    run_dir = tmp_path / "run"

    def signalled_while_stopping(peers):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)  # the handler runs at the next bytecode: it would raise Cancelled here
        return []

    monkeypatch.setattr(ranks, "stopped", signalled_while_stopping)
    with sigterm_cancels():
        installed = signal.getsignal(signal.SIGTERM)
        with pytest.raises(OSError, match="neighbors.npy"):
            train_run(run_dir, str(folder), 3, "tiny", show_bar=False)
        assert signal.getsignal(signal.SIGTERM) is installed  # a later SIGTERM cancels again
    status = read_status(run_dir)
    assert (status.state, status.stage) == ("failed", "neighbors")
    assert read_events(run_dir)[-1]["state"] == "failed"


@pytest.mark.parametrize("damaged, first_redone", [
    ("report.json", "images"), ("pretext.pt", "pretext"), ("scan.pt", "scan"),
    ("selflabel_probs.npy", "selflabel"),
])
def test_truncated_artifact_is_redone(small_run, tmp_path, damaged, first_redone):
    run_dir = tmp_path / "copy"
    shutil.copytree(small_run, run_dir)
    data = (run_dir / damaged).read_bytes()
    (run_dir / damaged).write_bytes(data[:len(data) // 2])
    events_before = len(read_events(run_dir))
    train_run(run_dir, show_bar=False)
    started = [e["stage"] for e in read_events(run_dir)[events_before:] if e["kind"] == "stage_start"]
    assert started[0] == first_redone
    assert read_status(run_dir).state == "finished"
    assert_run_loads(run_dir)


# ------------------------------------------------------------------ no unpickling

def load_calls(tree: ast.AST):
    """``(module name, call)`` of every ``<name>.load(...)`` / ``<name>.loads(...)`` call."""
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("load", "loads") and isinstance(node.func.value, ast.Name)):
            yield node.func.value.id, node


def keyword_is(call: ast.Call, name: str, value) -> bool:
    return any(k.arg == name and isinstance(k.value, ast.Constant) and k.value.value is value
               for k in call.keywords)


def test_no_unrestricted_unpickling_in_the_package():
    guarded = {"torch": 0, "np": 0}
    for path in sorted(PACKAGE.rglob("*.py")):
        for module, call in load_calls(ast.parse(path.read_text(), str(path))):
            where = f"{path.name}:{call.lineno}"
            assert module not in ("pickle", "marshal", "dill", "joblib", "numpy"), f"{where}: {module}.load"
            if module == "torch":
                assert keyword_is(call, "weights_only", True), f"{where}: torch.load without weights_only=True"
            if module == "np":
                assert keyword_is(call, "allow_pickle", False), f"{where}: np.load without allow_pickle=False"
            guarded[module] = guarded.get(module, 0) + 1
        assert "allow_pickle=True" not in path.read_text(), path.name
    assert guarded["torch"] >= 1 and guarded["np"] >= 1  # the scan saw the loaders it guards
