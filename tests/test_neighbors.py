"""Neighbour mining, fusion and purity."""
import faiss
import numpy as np
import pytest

from scan_core.method.neighbors import fuse_neighbors, index_bytes, mine_neighbors, neighbor_purity, search_kind, search_recall


def brute_force_topk(features, k):
    x = features / np.linalg.norm(features, axis=1, keepdims=True)
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    return np.argsort(-sims, axis=1)[:, :k], sims


def test_mine_neighbors_matches_brute_force():
    features = np.random.default_rng(0).normal(size=(80, 8)).astype(np.float32)
    got = mine_neighbors(features, k=6)
    expected, sims = brute_force_topk(features.astype(np.float64), 6)
    assert got.shape == (80, 6) and got.dtype == np.int64
    for row_got, row_expected in zip(got, expected):
        assert set(row_got) == set(row_expected)
    ranked = np.take_along_axis(sims, got, 1)
    assert np.all(np.diff(ranked, axis=1) <= 1e-6)  # most similar first


def test_mine_neighbors_small_batches_give_same_result():
    features = np.random.default_rng(1).normal(size=(50, 5))
    assert np.array_equal(mine_neighbors(features, 4, batch_size=7), mine_neighbors(features, 4))


@pytest.mark.parametrize("copies, k", [(4, 2), (4, 3), (4, 6), (12, 5)])
def test_mine_neighbors_never_returns_self_with_duplicates(copies, k):
    base = np.random.default_rng(2).normal(size=(6, 4)).astype(np.float32)
    features = np.repeat(base, copies, axis=0)  # every row has copies - 1 exact duplicates
    got = mine_neighbors(features, k)
    rows = np.arange(len(features))
    assert not (got == rows[:, None]).any()
    assert all(len(set(r)) == k for r in got)
    group = rows // copies
    n_dupes = min(k, copies - 1)
    assert (group[got[:, :n_dupes]] == group[:, None]).all()  # the duplicates come first


def test_mine_neighbors_all_rows_identical():
    got = mine_neighbors(np.ones((10, 3)), k=4)
    assert not (got == np.arange(10)[:, None]).any()
    assert all(len(set(r)) == 4 for r in got)


@pytest.mark.parametrize("k", [0, 10, 11])
def test_mine_neighbors_rejects_bad_k(k):
    with pytest.raises(ValueError):
        mine_neighbors(np.random.default_rng(0).normal(size=(10, 3)), k)


def test_fuse_prefers_candidates_in_both_lists():
    n = 6
    i = np.arange(n)[:, None]
    a = (i + np.array([1, 2, 3])) % n
    b = (i + np.array([4, 5, 3])) % n  # (i + 3) % n is in both, last in each
    fused = fuse_neighbors([a, b], k=5)
    assert (fused[:, 0] == (np.arange(n) + 3) % n).all()
    for row, r in zip(fused, range(n)):
        assert sorted(row) == sorted((r + np.arange(1, 6)) % n)  # all 5 distinct candidates


def test_fuse_with_itself_returns_the_list():
    neighbors = mine_neighbors(np.random.default_rng(3).normal(size=(40, 6)), k=7)
    assert np.array_equal(fuse_neighbors([neighbors, neighbors], k=7), neighbors)
    assert np.array_equal(fuse_neighbors([neighbors], k=5), neighbors[:, :5])


def test_fuse_rows_have_no_duplicates():
    rng = np.random.default_rng(4)
    lists = [mine_neighbors(rng.normal(size=(60, 5)), k=8) for _ in range(3)]
    fused = fuse_neighbors(lists, k=8)
    assert fused.shape == (60, 8)
    assert all(len(set(row)) == 8 for row in fused)
    for r, row in enumerate(fused):  # every fused neighbour came from some list
        assert set(row) <= set(np.concatenate([lst[r] for lst in lists]))


def test_fuse_rejects_too_few_candidates_and_bad_input():
    a = np.array([[1, 2], [0, 2], [0, 1]])
    with pytest.raises(ValueError):
        fuse_neighbors([a, a], k=3)
    with pytest.raises(ValueError):
        fuse_neighbors([], k=1)
    with pytest.raises(ValueError):
        fuse_neighbors([a, a[:2]], k=1)


def test_neighbor_purity_hand_example():
    labels = np.array([0, 0, 1, 1, 1])
    neighbors = np.array([[1, 2], [0, 4], [3, 4], [2, 4], [2, 3]])
    # rows score 1/2, 1/2, 1, 1, 1
    assert neighbor_purity(neighbors, labels) == pytest.approx(0.8)


def test_digit_pixel_neighbours_are_pure(digits):
    features = digits.images.reshape(len(digits.images), -1).astype(np.float32)
    neighbors = mine_neighbors(features, k=10)
    assert neighbor_purity(neighbors, digits.labels) > 0.9


def test_fuse_matches_a_reciprocal_rank_scorer_written_row_by_row():
    rng = np.random.default_rng(3)
    n, lists = 40, [np.stack([rng.choice(40, size, replace=False) for _ in range(40)]) for size in (6, 9, 4)]
    fused = fuse_neighbors(lists, k=7, rank_offset=10.0)
    for r in range(n):
        score = {}
        for lst in lists:
            for rank, candidate in enumerate(lst[r]):
                score[int(candidate)] = score.get(int(candidate), 0.0) + 1.0 / (10.0 + rank)
        best = sorted(score, key=lambda c: (-score[c], c))[:7]  # ties: the smaller image index
        assert fused[r].tolist() == best, r


def clustered_points(n, dim, centres, spread=3.0, seed=0):
    """Gaussian blobs around random centres (uniform data makes every approximate index look bad)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(centres, dim)) * spread
    return (means[rng.integers(0, centres, n)] + rng.normal(size=(n, dim))).astype(np.float32)


def brute_force_recall(features, found):
    """Share of the exact k nearest (cosine, numpy) that ``found`` holds, over every row."""
    exact, _ = brute_force_topk(features.astype(np.float64), found.shape[1])
    return np.mean([len(set(a) & set(b)) for a, b in zip(exact, found)]) / found.shape[1]


def test_the_approximate_search_finds_nearly_all_exact_neighbours_and_says_how_many():
    points = clustered_points(6000, 128, 10, spread=0.3)  # overlapping blobs: HNSW misses about 1%
    approximate = mine_neighbors(points, 20, exact_limit=0)  # HNSW at any size
    exact = mine_neighbors(points, 20)
    truth = brute_force_recall(points, approximate)
    assert 0.95 <= truth < 1.0 and not np.array_equal(approximate, exact)
    assert not (approximate == np.arange(len(points))[:, None]).any()
    assert search_recall(points, approximate, queries=len(points)) == pytest.approx(truth, abs=1e-9)
    sampled = search_recall(points, approximate, queries=500, seed=1)
    assert abs(sampled - truth) < 0.01  # 500 sampled queries: within about two standard errors
    assert search_recall(points, exact, queries=len(points)) == pytest.approx(brute_force_recall(points, exact))


def test_recall_of_a_list_missing_half_the_neighbours_is_one_half():
    points = clustered_points(600, 8, 10)
    exact = mine_neighbors(points, 10)
    others = np.array([[j for j in range(600) if j != i and j not in set(row)][:5] for i, row in enumerate(exact)])
    halved = np.concatenate([exact[:, :5], others], 1)
    assert search_recall(points, halved, queries=600) == pytest.approx(0.5)


def test_recall_and_the_search_refuse_bad_arguments():
    points = clustered_points(100, 4, 3)
    with pytest.raises(ValueError, match="exact_limit"):
        mine_neighbors(points, 5, exact_limit=-1)
    with pytest.raises(ValueError, match="neighbors must be"):
        search_recall(points, np.zeros((50, 5), dtype=np.int64))
    with pytest.raises(ValueError, match="queries"):
        search_recall(points, mine_neighbors(points, 5), queries=0)


@pytest.mark.parametrize("n, limit, gpus, kind", [
    (50_000, 50_000, 0, "exact"), (50_001, 50_000, 0, "hnsw"), (1_000_000, 50_000, 0, "hnsw"),
    (1_000_000, 50_000, 1, "gpu"), (100, 50_000, 2, "gpu"), (10_000_001, 50_000, 1, "ivf-disk"),
])
def test_the_search_is_exact_on_gpus_up_to_their_limit_else_exact_or_approximate_by_size(n, limit, gpus, kind):
    assert search_kind(n, limit, gpus, dim=10) == kind


def test_a_graph_past_the_memory_allowed_goes_to_disk():
    # 1,000,000 rows of 128-d with 48 links: 1.1 x (512 + 384) bytes a row, 985.6 MB
    assert index_bytes(1_000_000, 128, 48) == 985_600_000
    assert search_kind(1_000_000, 50_000, 0, dim=128, memory=985_600_000) == "hnsw"
    assert search_kind(1_000_000, 50_000, 0, dim=128, memory=985_599_999) == "ivf-disk"
    assert search_kind(50_000, 50_000, 0, dim=128, memory=0) == "exact"


def test_the_on_disk_index_finds_nearly_all_exact_neighbours_and_leaves_no_file(tmp_path):
    points = clustered_points(6000, 32, 30, spread=0.5)
    found = mine_neighbors(points, 20, exact_limit=0, memory=0, scratch=tmp_path)  # inverted lists in a file
    truth = brute_force_recall(points, found)
    assert 0.95 <= truth <= 1.0 and not (found == np.arange(len(points))[:, None]).any()
    assert search_recall(points, found, queries=len(points)) == pytest.approx(truth, abs=1e-9)
    assert list(tmp_path.iterdir()) == []  # the lists' file was deleted once searched


@pytest.mark.skipif(not hasattr(faiss, "get_num_gpus") or faiss.get_num_gpus() == 0,
                    reason="faiss has no GPU here (faiss-cpu, or no CUDA device)")
def test_neighbours_mined_on_gpus_are_the_exact_ones():
    points = np.random.default_rng(0).normal(size=(3000, 16)).astype(np.float32)
    unit = points / np.linalg.norm(points, axis=1, keepdims=True)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    expected = np.argsort(-similarity, axis=1)[:, :10]
    assert (mine_neighbors(points, 10) == expected).mean() > 0.999  # ties aside
