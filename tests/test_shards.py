"""The sharded image cache: a folder decoded into memory-mapped shards (by worker processes from
:data:`~scan_core.data.sources.folders.PROCESS_FILES` files on) gives the very pixels that were
written, as the flat in-memory load does; a sharded array indexes like numpy; the loader holds about
one shard, not the whole folder; a run on a folder trains from its shards."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from PIL import Image

from scan_core.data.images import ImageSet
from scan_core.data.shards import SHARD_ENV, ShardedArray, ShardWriter, rows_per_shard
from scan_core.data.sources import load_source
from scan_core.data.sources.folders import PROCESS_FILES


def written_folder(root, count: int, side: int = 16, channels: int = 1, seed: int = 0) -> np.ndarray:
    """``count`` random lossless PNGs of ``side`` px in two label folders; their pixels ``(count, side,
    side, channels)`` in the loader's sorted order."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (count, side, side, channels), dtype=np.uint8)
    for i, image in enumerate(pixels):
        folder = root / ("a" if i < count // 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[..., 0] if channels == 1 else image).save(folder / f"{i:05d}.png")
    return pixels


def test_a_sharded_array_indexes_as_numpy_does(tmp_path):
    flat = np.arange(23 * 3 * 2, dtype=np.int32).reshape(23, 3, 2)
    writer = ShardWriter(tmp_path, "rows", (3, 2), np.int32, rows=5)
    for start in (0, 7, 8, 20):  # uneven batches across shard borders
        writer.append(flat[start:{0: 7, 7: 8, 8: 20, 20: 23}[start]])
    names = writer.close()
    assert names == [f"rows-{i:05d}.npy" for i in range(5)]  # 5 + 5 + 5 + 5 + 3 rows
    sharded = ShardedArray.load(tmp_path, names)
    assert sharded.shape == flat.shape and sharded.dtype == flat.dtype and len(sharded) == 23 and sharded.ndim == 3
    rng = np.random.default_rng(0)
    keys = [0, 4, 5, 22, -1, -23, slice(None), slice(3, 17), slice(None, None, 4), slice(21, 2, -3), slice(30, 40),
            rng.integers(0, 23, 40), np.array([22, 0, 5, 5, 4]), [1, 2], np.array([], dtype=np.int64),
            rng.random(23) > 0.5, (slice(2, 9), 1), (np.array([3, 19]), slice(None), 0)]
    for key in keys:
        np.testing.assert_array_equal(sharded[key], flat[key], err_msg=str(key))
    np.testing.assert_array_equal(np.asarray(sharded), flat)
    for bad in (23, -24, np.array([0, 23]), rng.random(5) > 0.5):
        with pytest.raises(IndexError):
            sharded[bad]


def test_shards_hold_the_setting_s_bytes_and_are_written_as_they_fill(tmp_path, monkeypatch):
    monkeypatch.setenv(SHARD_ENV, "0.01")  # 10,485 bytes: 40 rows of 256 bytes
    assert rows_per_shard((16, 16, 1), np.uint8) == 40
    writer = ShardWriter(tmp_path, "images", (16, 16, 1), np.uint8)
    writer.append(np.zeros((45, 16, 16, 1), np.uint8))
    assert [p.name for p in tmp_path.glob("*.npy")] == ["images-00000.npy"]  # the first, before close
    monkeypatch.setenv(SHARD_ENV, "none")
    with pytest.raises(ValueError, match="SCAN_EXPLORER_SHARD_MB must be a number of megabytes"):
        rows_per_shard((1,), np.uint8)
    with pytest.raises(ValueError, match="do not fit shards"):
        writer.append(np.zeros((1, 8, 8, 1), np.uint8))


def test_a_folder_decoded_into_shards_by_worker_processes_gives_the_pixels_written(tmp_path, monkeypatch):
    count = PROCESS_FILES + 101  # enough for worker processes
    pixels = written_folder(tmp_path / "data", count)
    (tmp_path / "data" / "a" / "broken.png").write_text("not a png")
    Image.fromarray(pixels[3, ..., 0]).save(tmp_path / "data" / "b" / "copy.png")  # a duplicate
    monkeypatch.setenv(SHARD_ENV, "0.1")  # 409 images a shard
    sharded = load_source(str(tmp_path / "data"), cache=tmp_path / "cache")
    assert isinstance(sharded.images, ShardedArray) and len(sharded.images.shards) == 6
    assert len(sharded.images.shards[0]) == 409
    np.testing.assert_array_equal(sharded.images[:], pixels)
    flat = load_source(str(tmp_path / "data"))
    assert isinstance(flat.images, np.ndarray)
    np.testing.assert_array_equal(flat.images, pixels)
    assert sharded.ids.tolist() == flat.ids.tolist() == sorted(flat.ids.tolist())
    assert sharded.skipped == flat.skipped == [{"path": "a/broken.png", "reason": "not a readable image file"},
                                               {"path": "b/copy.png", "reason": "duplicate of a/00003.png"}]
    np.testing.assert_array_equal(sharded.labels, [0] * (count // 2) + [1] * (count - count // 2))
    sharded.save(tmp_path / "cache")  # the shards stay as they are; the set reads back the same
    again = ImageSet.load(tmp_path / "cache")
    assert again.images.names == sharded.images.names
    np.testing.assert_array_equal(again.images[np.arange(count)[::-7]], pixels[::-7])


def test_loading_into_shards_holds_about_one_shard_not_the_folder(tmp_path, monkeypatch):
    count = 3 * PROCESS_FILES
    written_folder(tmp_path / "data", count, side=32, channels=3)
    whole = count * 32 * 32 * 3  # 18 MB
    monkeypatch.setenv(SHARD_ENV, "1")
    tracemalloc.start()
    try:
        images = load_source(str(tmp_path / "data"), cache=tmp_path / "cache")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(images) == count and len(images.images.shards) == 18  # 341 images a shard
    # one 1 MB shard, the images in flight (a window of 1,024: 3 MB) and the ids and paths
    assert peak < 0.4 * whole, f"peak {peak / 1e6:.1f} MB for {whole / 1e6:.1f} MB of images"


def test_a_run_on_a_folder_trains_from_the_shards_it_decoded_into(tmp_path, monkeypatch, digits):
    from scan_core.engine.run import train_run
    for i in range(600):
        folder = tmp_path / "data" / str(digits.class_names[digits.labels[i]])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(digits.images[i, ..., 0]).save(folder / f"{i:03d}.png")
    monkeypatch.setenv(SHARD_ENV, str(250 * 16 * 16 / 1024 ** 2))  # 250 images a shard
    metrics = train_run(tmp_path / "run", str(tmp_path / "data"), 10, preset="tiny", show_bar=False)
    images = ImageSet.load(tmp_path / "run" / "images")
    assert [len(shard) for shard in images.images.shards] == [250, 250, 100]
    assert not list((tmp_path / "run").glob("images/images.npy"))
    order = np.argsort([f"{digits.class_names[digits.labels[i]]}/{i:03d}.png" for i in range(600)])
    np.testing.assert_array_equal(images.images[:], digits.images[:600][order])
    assert metrics.final is not None and len(np.load(tmp_path / "run" / "features.npy")) == 600
