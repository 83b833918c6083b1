"""Passes over every image that hold no more than a batch in memory: they write into an on-disk
array (``write_array``, ``scratch_array``) and read one a head or a batch at a time. Measured with
tracemalloc, which counts numpy's allocations; each result checked against the in-memory pass."""
import tracemalloc

import numpy as np
import torch

from scan_core.data.artifacts import scratch_array, write_array
from scan_core.engine.models import column_std
from scan_core.method.clustering import ClusterHeads, consensus_order, predict, predict_clusters
from scan_core.method.pretext import embed


def peak_bytes(work):
    """``(result, peak)``: what ``work()`` returns and the most bytes numpy held meanwhile."""
    tracemalloc.start()
    try:
        result = work()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_an_embedding_written_to_disk_holds_a_batch_not_the_whole_array(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (20_000, 8, 8, 1), dtype=np.uint8)
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 64))
    whole = embed(network, images, "cpu", batch_size=1000)
    written, peak = peak_bytes(lambda: write_array(tmp_path / "f.npy", whole.shape, np.float32,
                                                   lambda out: embed(network, images, "cpu", batch_size=1000, out=out)))
    assert np.array_equal(written, whole)
    assert peak < whole.nbytes / 4  # 5.1 MB whole; a batch is 256 KB


def test_predictions_on_disk_and_cluster_ids_match_the_in_memory_ones(tmp_path):
    torch.manual_seed(0)
    features = torch.randn(6000, 16)
    heads = ClusterHeads(16, 7, num_heads=5)
    every = predict(heads, lambda index: features[index], 6000, batch_size=500)
    on_disk, peak = peak_bytes(lambda: predict(heads, lambda index: features[index], 6000, batch_size=500,
                                               out=scratch_array(tmp_path, (5, 6000, 7), np.float32)))
    assert every.shape == (5, 6000, 7) and np.array_equal(on_disk, every) and peak < every.nbytes / 4
    with torch.no_grad():
        expected = heads(features).argmax(2).numpy()
    clusters = predict_clusters(heads, lambda index: features[index], 6000, batch_size=500)
    assert clusters.dtype == np.uint8 and np.array_equal(clusters, expected)
    assert np.allclose(predict(heads, lambda index: features[index], 6000, head=3), every[3])


def test_the_consensus_of_heads_on_disk_reads_a_head_at_a_time(tmp_path):
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 6, 30_000)
    probs = np.full((8, 30_000, 6), 0.02, np.float32)
    for head in range(8):  # each head: the truth renumbered, 10% of its images elsewhere
        found = rng.permutation(6)[np.where(rng.random(30_000) < 0.1, rng.integers(0, 6, 30_000), truth)]
        probs[head, np.arange(30_000), found] = 0.9
    on_disk = scratch_array(tmp_path, probs.shape, np.float32)
    on_disk[:] = probs
    order, peak = peak_bytes(lambda: consensus_order(on_disk, probs[0].argmax(1)))
    assert np.array_equal(order, consensus_order(probs, probs[0].argmax(1)))
    aligned = np.stack([probs[h][:, np.argsort(order[h])] for h in range(8)])  # head h's cluster j -> order[h, j]
    assert (aligned.argmax(2) == probs[0].argmax(1)).mean() > 0.85  # every head renumbered onto the first
    assert peak < probs.nbytes / 3  # 5.8 MB of probabilities; a head's 0.7 MB and their sum


def test_the_standard_deviation_of_columns_read_in_batches_is_torchs():
    rows = np.random.default_rng(0).normal(3.0, [0.5, 2.0, 7.0], size=(10_001, 3)).astype(np.float32)
    expected = torch.from_numpy(rows).std(0).numpy()
    assert np.allclose(column_std(rows, batch_size=999), expected, rtol=1e-5)
