"""Clustering metrics against brute force, hand counts and scikit-learn."""
import itertools

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

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


def test_evaluate_matches_sklearn():
    rng = np.random.default_rng(3)
    labels, clusters = rng.integers(0, 4, 200), rng.integers(0, 6, 200)
    scores = metrics.evaluate(clusters, labels)
    assert set(scores) == {"acc", "majority_acc", "nmi", "ari"}
    assert scores["nmi"] == pytest.approx(normalized_mutual_info_score(labels, clusters))
    assert scores["ari"] == pytest.approx(adjusted_rand_score(labels, clusters))
    assert scores["acc"] == pytest.approx(metrics.hungarian_accuracy(clusters, labels))


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

