"""Atomic, pickle-free artifact I/O, torch files and training checkpoints."""
import errno
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from scan_core.data import artifacts
from scan_core.data.artifacts import (
    Checkpoint,
    CorruptArtifact,
    load_array,
    load_json,
    load_torch,
    save_array,
    save_bytes,
    save_json,
    save_torch,
    scratch_array,
    set_writes,
    write_array,
)


@pytest.mark.parametrize("array", [
    np.random.default_rng(0).normal(size=(7, 3)).astype(np.float32),
    np.arange(12, dtype=np.int64).reshape(3, 4),
    np.array([True, False, True]),
    np.random.default_rng(1).integers(0, 256, (2, 4, 4, 3), dtype=np.uint8),
])
@pytest.mark.parametrize("mmap", [False, True])
def test_array_round_trip(tmp_path, array, mmap):
    path = tmp_path / "sub" / "a.npy"  # parent folders are created
    save_array(path, array)
    back = load_array(path, mmap=mmap)
    assert back.dtype == array.dtype and np.array_equal(back, array)


@pytest.mark.parametrize("keep", [0, 10, 0.5])
@pytest.mark.parametrize("mmap", [False, True])
def test_truncated_npy_raises_corrupt(tmp_path, keep, mmap):
    path = tmp_path / "a.npy"
    save_array(path, np.ones((100, 100), np.float32))
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep) if isinstance(keep, float) else keep])
    with pytest.raises(CorruptArtifact):
        load_array(path, mmap=mmap)


def test_missing_array_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_array(tmp_path / "nope.npy")


def test_object_arrays_refused(tmp_path):
    with pytest.raises(ValueError):
        save_array(tmp_path / "o.npy", np.array([{"a": 1}, None], dtype=object))
    assert list(tmp_path.iterdir()) == []
    np.save(tmp_path / "pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(CorruptArtifact):  # never unpickled on load
        load_array(tmp_path / "pickled.npy")


def test_json_round_trip_with_numpy_and_paths(tmp_path):
    path = tmp_path / "m.json"
    save_json(path, {"acc": np.float32(0.5), "n": np.int64(3), "ids": np.arange(3),
                     "dir": Path("runs/x"), "nested": [1, {"b": None}]})
    assert load_json(path) == {"acc": 0.5, "n": 3, "ids": [0, 1, 2], "dir": "runs/x",
                               "nested": [1, {"b": None}]}


@pytest.mark.parametrize("content", [b"", b'{"a": [1, 2', b"not json"])
def test_corrupt_json_raises(tmp_path, content):
    path = tmp_path / "m.json"
    path.write_bytes(content)
    with pytest.raises(CorruptArtifact):
        load_json(path)


def test_binary_garbage_json_raises_corrupt(tmp_path):
    path = tmp_path / "m.json"
    path.write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(CorruptArtifact):
        load_json(path)


def test_no_temp_files_left_after_writes(tmp_path):
    save_array(tmp_path / "a.npy", np.zeros(3))
    save_array(tmp_path / "a.npy", np.ones(3))  # overwrite
    save_json(tmp_path / "b.json", {"x": 1})
    save_bytes(tmp_path / "c.bin", b"\x00\x01")
    assert sorted(os.listdir(tmp_path)) == ["a.npy", "b.json", "c.bin"]
    assert np.array_equal(load_array(tmp_path / "a.npy"), np.ones(3))
    assert (tmp_path / "c.bin").read_bytes() == b"\x00\x01"


def test_failed_json_write_keeps_previous_file(tmp_path):
    path = tmp_path / "m.json"
    save_json(path, {"ok": 1})
    with pytest.raises(TypeError):
        save_json(path, {"ok": 2, "bad": object()})
    assert load_json(path) == {"ok": 1}
    assert os.listdir(tmp_path) == ["m.json"]


def test_write_failing_midway_keeps_previous_file(tmp_path):
    path = tmp_path / "a.bin"
    save_bytes(path, b"old")

    def write_then_fail(handle):
        handle.write(b"half-written")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        artifacts._atomic_write(path, write_then_fail)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["a.bin"]


def test_disk_full_keeps_previous_file_and_names_target(tmp_path, monkeypatch):
    path = tmp_path / "a.npy"
    save_array(path, np.zeros(3))

    def disk_full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OSError, match=rf"cannot write {path}: No space left on device") as error:
        save_array(path, np.ones(3))
    assert error.value.errno == errno.ENOSPC
    assert os.listdir(tmp_path) == ["a.npy"]                  # the temporary file is gone
    assert np.array_equal(load_array(path), np.zeros(3))       # the old version is untouched


def test_an_array_written_as_it_is_filled_reads_back_memory_mapped(tmp_path):
    path = tmp_path / "f.npy"
    expected = np.arange(60, dtype=np.float32).reshape(20, 3)

    def fill(out):
        assert not path.exists()  # a temporary file until filled
        for start in range(0, 20, 7):
            out[start:start + 7] = expected[start:start + 7]

    written = write_array(path, (20, 3), np.float32, fill)
    assert isinstance(written, np.memmap) and not written.flags.writeable
    assert np.array_equal(written, expected) and np.array_equal(np.load(path), expected)
    assert os.listdir(tmp_path) == ["f.npy"]


def test_an_array_whose_filling_fails_leaves_the_previous_one(tmp_path):
    path = tmp_path / "f.npy"
    save_array(path, np.zeros(4))

    def fail_halfway(out):
        out[:2] = 1
        raise RuntimeError("stopped")

    with pytest.raises(RuntimeError, match="stopped"):
        write_array(path, (4,), np.float64, fail_halfway)
    assert np.array_equal(load_array(path), np.zeros(4)) and os.listdir(tmp_path) == ["f.npy"]


def test_a_process_that_does_not_write_fills_the_array_in_memory(tmp_path):
    set_writes(False)
    try:
        written = write_array(tmp_path / "f.npy", (3,), np.int64, lambda out: out.__setitem__(slice(None), 7))
        scratch = scratch_array(tmp_path, (3,), np.int64)
    finally:
        set_writes(True)
    assert list(written) == [7, 7, 7] and not isinstance(written, np.memmap) and os.listdir(tmp_path) == []
    assert not isinstance(scratch, np.memmap)


def test_a_scratch_array_is_a_file_with_no_name(tmp_path):
    scratch = scratch_array(tmp_path, (1000, 4), np.float32)
    scratch[:] = 2.5
    assert isinstance(scratch, np.memmap) and scratch.sum() == 10_000 and os.listdir(tmp_path) == []


def test_unwritable_folder_names_target(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(OSError, match=r"cannot write .*file/sub/m\.json"):
        save_json(tmp_path / "file" / "sub" / "m.json", {})


def test_torch_round_trip_and_corrupt_files(tmp_path):
    path = tmp_path / "m.pt"
    save_torch(path, {"w": torch.arange(4.0), "best": 3, "name": "x"})
    back = load_torch(path)
    assert torch.equal(back["w"], torch.arange(4.0)) and back["best"] == 3 and back["name"] == "x"
    data = path.read_bytes()
    for damaged in (b"", data[:50], data[:len(data) // 2], b"garbage", pickle.dumps(Exception("code"), protocol=2)):
        path.write_bytes(damaged)
        with pytest.raises(CorruptArtifact, match="m.pt"):
            load_torch(path)
    with pytest.raises(FileNotFoundError):
        load_torch(tmp_path / "missing.pt")


def _training_state(seed: int):
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()                                           # the optimizer has state to save
    return model, optimizer, np.random.default_rng(seed)


def test_checkpoint_restores_model_optimizer_and_random_state(tmp_path):
    resumed = []
    checkpoint = Checkpoint(tmp_path / "checkpoints" / "stage.pt", on_resume=resumed.append)
    model, optimizer, rng = _training_state(0)
    checkpoint.save(3, model, optimizer, rng)
    expected = (rng.random(), torch.rand(1))
    fresh_model, fresh_optimizer, fresh_rng = _training_state(1)
    assert checkpoint.resume(fresh_model, fresh_optimizer, fresh_rng) == 3 and resumed == [3]
    assert torch.equal(fresh_model.weight, model.weight)
    assert fresh_optimizer.state_dict()["state"][0]["exp_avg"].equal(optimizer.state_dict()["state"][0]["exp_avg"])
    assert (fresh_rng.random(), torch.rand(1)) == expected
    checkpoint.clear()
    assert not checkpoint.path.exists()
    assert checkpoint.resume(*_training_state(2)) == 0 and resumed == [3]


def test_corrupt_or_foreign_checkpoint_counts_as_none(tmp_path):
    checkpoint = Checkpoint(tmp_path / "stage.pt")
    checkpoint.path.write_bytes(b"\x00" * 100)
    assert checkpoint.resume(*_training_state(0)) == 0
    model, optimizer, rng = _training_state(0)
    checkpoint.save(2, model, optimizer, rng)
    other = torch.nn.Linear(5, 2)                               # another model's shapes
    assert checkpoint.resume(other, torch.optim.Adam(other.parameters()), rng) == 0


def test_clearing_a_checkpoint_also_removes_a_copy_a_kill_left_half_written(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / "scan.pt").write_bytes(b"saved")
    (folder / ".scan.pt.k2x9.tmp").write_bytes(b"half")   # what a SIGKILL inside save leaves
    (folder / "pretext.pt").write_bytes(b"another stage's")
    Checkpoint(folder / "scan.pt").clear()
    assert sorted(p.name for p in folder.iterdir()) == ["pretext.pt"]
