"""Clustering metrics against brute force, hand counts and textbook formulas."""
import itertools
import math

import numpy as np
import pytest

from scan_core.method import metrics


def brute_force_accuracy(clusters, labels, k):
    return max(np.mean(np.array(perm)[clusters] == labels) for perm in itertools.permutations(range(k)))


@pytest.mark.parametrize("seed", range(5))
def test_hungarian_accuracy_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 5, 60)
    clusters = np.where(rng.random(60) < 0.5, labels, rng.integers(0, 5, 60))  # partly informative
    assert metrics.hungarian_accuracy(clusters, labels) == pytest.approx(
        brute_force_accuracy(clusters, labels, 5))


def test_permuted_cluster_ids_score_perfectly():
    labels = np.random.default_rng(1).integers(0, 5, 100)
    clusters = np.array([3, 0, 4, 1, 2])[labels]
    scores = metrics.evaluate(clusters, labels)
    assert scores["acc"] == 1.0 and scores["majority_acc"] == 1.0
    assert scores["nmi"] == pytest.approx(1.0) and scores["ari"] == pytest.approx(1.0)
    mapping = metrics.hungarian_mapping(clusters, labels)
    assert mapping == {3: 0, 0: 1, 4: 2, 1: 3, 2: 4}


def test_majority_accuracy_overclustering_hand_count():
    clusters = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3])
    labels = np.array([0, 0, 1, 1, 1, 2, 0, 2, 2])
    # cluster 0 -> class 0 (2 hits), 1 -> 1 (2), 2 -> 2 (2), 3 -> 2 (1)
    assert metrics.majority_accuracy(clusters, labels) == pytest.approx(7 / 9)
    assert metrics.majority_mapping(clusters, labels) == {0: 0, 1: 1, 2: 2, 3: 2}
    assert metrics.hungarian_accuracy(clusters, labels) == pytest.approx(6 / 9)  # one cluster unmatched


@pytest.mark.parametrize("seed", range(3))
def test_majority_accuracy_at_least_hungarian(seed):
    rng = np.random.default_rng(seed)
    labels, clusters = rng.integers(0, 3, 80), rng.integers(0, 8, 80)
    assert metrics.majority_accuracy(clusters, labels) >= metrics.hungarian_accuracy(clusters, labels)


def count_table(clusters, labels):
    """Contingency counts ``{(cluster, label): n}`` by plain counting."""
    table = {}
    for k, c in zip(clusters.tolist(), labels.tolist()):
        table[k, c] = table.get((k, c), 0) + 1
    return table


def marginals(table, axis):
    sums = {}
    for key, n in table.items():
        sums[key[axis]] = sums.get(key[axis], 0) + n
    return list(sums.values())


def textbook_ari(clusters, labels):
    """Hubert & Arabie's adjusted Rand index from the contingency table."""
    table = count_table(clusters, labels)
    n = sum(table.values())
    index = sum(math.comb(v, 2) for v in table.values())
    rows = sum(math.comb(a, 2) for a in marginals(table, 0))
    cols = sum(math.comb(b, 2) for b in marginals(table, 1))
    expected = rows * cols / math.comb(n, 2)
    return (index - expected) / (0.5 * (rows + cols) - expected)


def textbook_nmi(clusters, labels):
    """Mutual information over the arithmetic mean of the two entropies (natural logs)."""
    table = count_table(clusters, labels)
    n = sum(table.values())
    rows = {k: sum(v for (kk, _), v in table.items() if kk == k) for k, _ in table}
    cols = {c: sum(v for (_, cc), v in table.items() if cc == c) for _, c in table}
    mi = sum(v / n * math.log(n * v / (rows[k] * cols[c])) for (k, c), v in table.items())
    h_rows = -sum(a / n * math.log(a / n) for a in rows.values())
    h_cols = -sum(b / n * math.log(b / n) for b in cols.values())
    return mi / ((h_rows + h_cols) / 2)


def test_evaluate_hand_worked_example():
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    clusters = np.array([0, 0, 1, 1, 1, 2, 2, 2])
    # counts (cluster x class): c0 = [2, 0, 0], c1 = [2, 1, 0], c2 = [0, 1, 2]
    # one-to-one best: c0->0 (2), c1->1 (1), c2->2 (2) = 5 of 8; majority: 2 + 2 + 2 = 6 of 8
    # ARI: sum C(n_ij, 2) = 3 (three 2s), clusters 2,3,3 -> 1+3+3 = 7, classes 4,2,2 -> 6+1+1 = 8,
    #      expected 7 * 8 / C(8, 2) = 2, max 7.5: (3 - 2) / (7.5 - 2) = 2/11
    # NMI: cluster shares 1/4, 3/8, 3/8; class shares 1/2, 1/4, 1/4; MI = sum p_ij ln(p_ij / (p_i p_j))
    #      = 1/4 ln 2 + 1/4 ln(4/3) + 1/8 ln(4/3) + 1/8 ln(4/3) + 1/4 ln(8/3) = 1/4 ln(256/27),
    #      H(clusters) = -(1/4 ln 1/4 + 2 * 3/8 ln 3/8), H(classes) = -(1/2 ln 1/2 + 2 * 1/4 ln 1/4)
    mi = 0.25 * math.log(256 / 27)
    h_clusters = -(0.25 * math.log(0.25) + 0.75 * math.log(3 / 8))
    h_classes = -(0.5 * math.log(0.5) + 0.5 * math.log(0.25))
    scores = metrics.evaluate(clusters, labels)
    assert set(scores) == {"acc", "majority_acc", "nmi", "ari"}
    assert scores["acc"] == pytest.approx(5 / 8)
    assert scores["majority_acc"] == pytest.approx(6 / 8)
    assert scores["ari"] == pytest.approx(2 / 11)
    assert scores["nmi"] == pytest.approx(mi / ((h_clusters + h_classes) / 2))
    # the helpers the randomized test relies on agree with the hand count
    assert textbook_ari(clusters, labels) == pytest.approx(2 / 11)
    assert textbook_nmi(clusters, labels) == pytest.approx(mi / ((h_clusters + h_classes) / 2))


@pytest.mark.parametrize("seed", range(4))
def test_evaluate_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, 40)
    clusters = np.where(rng.random(40) < 0.5, labels, rng.integers(0, 4, 40))  # partly informative
    clusters = np.array([2, 0, 3, 1])[clusters]                                  # ids permuted
    scores = metrics.evaluate(clusters, labels)
    assert scores["acc"] == pytest.approx(brute_force_accuracy(clusters, labels, 4))   # all 24 permutations
    assert scores["nmi"] == pytest.approx(textbook_nmi(clusters, labels))
    assert scores["ari"] == pytest.approx(textbook_ari(clusters, labels))


def test_contingency_counts_and_shape():
    clusters, labels = np.array([0, 0, 2, 1]), np.array([1, 1, 0, 0])
    assert metrics.contingency(clusters, labels).tolist() == [[0, 2], [1, 0], [1, 0]]
    table = metrics.contingency(clusters, labels, num_clusters=5, num_classes=4)
    assert table.shape == (5, 4) and table.sum() == 4


@pytest.mark.parametrize("clusters, labels", [
    ([0, 1, 2], [0, 1]),            # length mismatch
    ([[0, 1]], [[0, 1]]),           # not 1-D
    ([], []),                       # empty
    ([0, -1], [0, 1]),              # negative cluster id
    ([0, 1], [0, -2]),              # negative label
])
@pytest.mark.parametrize("fn", [metrics.hungarian_accuracy, metrics.majority_accuracy, metrics.evaluate,
                                metrics.contingency])
def test_invalid_inputs_raise(fn, clusters, labels):
    with pytest.raises(ValueError):
        fn(np.array(clusters, dtype=np.int64), np.array(labels, dtype=np.int64))

