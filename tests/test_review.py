"""The review queue: hand-worked scores, and planted misassignments on digits found first."""
import numpy as np
import pytest

from scan_core.explore.review import review_queue

PROBS = np.array([[0.9, 0.1], [0.55, 0.45], [0.8, 0.2], [0.2, 0.8], [0.1, 0.9], [0.6, 0.4]])
CLUSTERS = np.array([0, 0, 0, 1, 1, 1])  # image 5 moved to cluster 1 by the user; the model says 0
MINED = np.array([[1, 2], [2, 3], [0, 1], [4, 5], [3, 5], [0, 2]])
FEATURES = np.array([[2, 1], [0, 3], [1, 0], [5, 4], [5, 3], [3, 4]])


def test_votes_and_order_worked_by_hand():
    # each neighbour votes its probability of the image's cluster; image 5, moved, votes 1 for cluster 1
    queue = review_queue(PROBS, [MINED], CLUSTERS)
    assert np.allclose(queue.against, [[0.325, 0.5, 0.275, 0.05, 0.1, 0.85]])  # e.g. #1: 1 - (0.8 + 0.2) / 2
    assert queue.order.tolist() == [5, 1, 0, 2, 4, 3]
    both = review_queue(PROBS, [MINED, FEATURES], CLUSTERS)
    assert np.allclose(both.against[1], [0.325, 0.45, 0.275, 0.05, 0.1, 0.15])
    assert np.allclose(both.doubt, [0.65, 0.95, 0.55, 0.1, 0.2, 1.0])
    assert both.order.tolist() == [5, 1, 0, 2, 4, 3]
    assert both.reason(5) == "its mined neighbours 15% for its cluster · its nearest in the features 85% for its cluster"
    assert np.allclose(both.likely_wrong, [0.325, 0.475, 0.275, 0.05, 0.1, 0.5])  # the mean of the two votes
    assert both.agreement(1) == pytest.approx(0.525)


def test_a_cluster_made_by_a_split_gets_votes_from_its_members_only():
    clusters = CLUSTERS.copy()
    clusters[4] = 2  # split off: the model has no probability for cluster 2
    against = review_queue(PROBS, [MINED], clusters).against[0]
    assert against[4] == 1.0  # neighbours 3 (cluster 1) and 5 (cluster 1): no vote for 2
    assert against[3] == 0.5  # neighbour 4 now in cluster 2 votes 0, neighbour 5 in cluster 1 votes 1


def test_reviewed_images_leave_the_queue():
    assert review_queue(PROBS, [MINED], CLUSTERS, skip={5, 0}).order.tolist() == [1, 2, 4, 3]


def test_shapes_that_do_not_match_are_refused():
    with pytest.raises(ValueError, match="must be \\(N, k\\) with N=6"):
        review_queue(PROBS, [MINED[:5]], CLUSTERS)
    with pytest.raises(ValueError, match="K >= 2"):
        review_queue(PROBS[:, :1], [MINED], CLUSTERS)
    with pytest.raises(ValueError, match="at least one neighbour list"):
        review_queue(PROBS, [], CLUSTERS)


def test_planted_misassignments_on_digits_come_first(digits):
    pixels = digits.images.reshape(len(digits), -1).astype(np.float64)
    unit = pixels / np.linalg.norm(pixels, axis=1, keepdims=True)
    similar = unit @ unit.T
    np.fill_diagonal(similar, -np.inf)
    neighbors = np.argsort(-similar, axis=1)[:, :10]  # brute-force cosine 10-NN of the pixels
    rng = np.random.default_rng(0)
    planted = rng.choice(len(digits), 30, replace=False)
    clusters = digits.labels.copy()
    clusters[planted] = (clusters[planted] + 1) % 10  # 30 images put in the wrong cluster...
    probs = np.full((len(digits), 10), 0.01)
    probs[np.arange(len(digits)), clusters] = 0.91    # ...where the model is sure of them
    first = review_queue(probs, [neighbors], clusters).order[:30]
    # chance: 30 x 30 / 1797 = 0.5; a few planted images have neighbours of other digits (pixel kNN)
    assert len(set(first.tolist()) & set(planted.tolist())) >= 25


def test_teaching_picks_take_the_image_nearest_each_group_centre_biggest_group_first():
    from scan_core.explore.review import teaching_picks
    rng = np.random.default_rng(0)
    sizes = [50, 120, 80]
    centres = np.eye(3, 6) * 10
    points = np.concatenate([c + rng.normal(0, 0.5, (n, 6)) for c, n in zip(centres, sizes)]).astype(np.float32)
    group = np.repeat([0, 1, 2], sizes)
    picks = teaching_picks(points, 3)
    assert group[picks].tolist() == [1, 2, 0]  # one per group, the biggest first
    unit = points / np.linalg.norm(points, axis=1, keepdims=True)
    for pick in picks:  # each the member nearest its group's mean (brute force, in the normalised space)
        members = np.flatnonzero(group == group[pick])
        mean = unit[members].mean(0)
        assert pick == members[np.argmin(((unit[members] - mean) ** 2).sum(1))]
    skipped = teaching_picks(points, 3, skip=picks)
    assert not set(skipped) & set(picks) and sorted(group[skipped]) == [0, 1, 2]


def test_near_duplicates_and_outliers_from_the_neighbours_by_hand():
    from scan_core.explore.review import near_duplicates, neighbour_similarity, outliers
    features = np.array([[1.0, 0.0], [0.999, 0.04], [0.0, 1.0], [0.6, 0.8], [-1.0, 0.1]])
    neighbors = np.array([[1, 3], [0, 3], [3, 1], [2, 1], [2, 3]])
    similarity = neighbour_similarity(features, neighbors, batch=2)
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    expected = np.array([[unit[i] @ unit[j] for j in row] for i, row in enumerate(neighbors)])
    assert np.allclose(similarity, expected, atol=1e-6)
    assert near_duplicates(similarity, neighbors, threshold=0.99).tolist() == [[0, 1]]  # found from both: once
    assert near_duplicates(similarity, neighbors, threshold=0.79).tolist() == [[0, 1], [2, 3]]
    assert outliers(similarity, 2).tolist() == [4, 2]  # #4 is unlike its neighbours; then #2 (0.80, 0.04)
