"""Atomic, pickle-free artifact I/O."""
import os
from pathlib import Path

import numpy as np
import pytest

from scan_core import artifacts
from scan_core.artifacts import CorruptArtifact, load_array, load_json, save_array, save_bytes, save_json


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
