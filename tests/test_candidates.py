"""Candidate partitions and the label-free choice among them (scan_core.method.candidates)."""
from __future__ import annotations

import numpy as np
import pytest

from scan_core.engine.stages.scan import matched
from scan_core.method.candidates import (
    PEERS,
    CandidateScore,
    choose_candidate,
    peer_partitions,
    score_candidates,
)
from scan_core.method.metrics import hungarian_accuracy


def blobs(n_per: int = 60, dims: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Four well-apart Gaussian blobs ``(4 n_per, dims)`` and their labels."""
    rng = np.random.default_rng(seed)
    centres = np.eye(dims)[:4] * 10
    labels = np.repeat(np.arange(4), n_per)
    return (centres[labels] + rng.normal(0, 0.5, (len(labels), dims))).astype(np.float32), labels


def test_every_peer_finds_well_apart_blobs():
    features, labels = blobs()
    embedding = features[:, :4] + 0.0  # the blobs' own coordinates stand in for a UMAP embedding
    found = peer_partitions(features, embedding, 4, seed=0)
    assert set(found) == set(PEERS)
    for name, clusters in found.items():
        assert hungarian_accuracy(clusters, labels) == 1.0, name


def test_ward_past_its_sample_assigns_the_rest_to_the_nearest_mean(monkeypatch):
    from scan_core.method import candidates
    monkeypatch.setattr(candidates, "WARD_SAMPLE", 50)  # 240 images: 50 fitted, 190 placed
    features, labels = blobs()
    found = peer_partitions(features, features[:, :4] + 0.0, 4, seed=1)
    assert hungarian_accuracy(found["UMAP + Ward"], labels) == 1.0


def test_scores_match_hand_worked_values():
    # six points on a line, two groups of three; neighbours: each point's next one (wrapping in its group)
    embedding = np.array([[0.0], [1.0], [2.0], [10.0], [11.0], [12.0]])
    neighbors = np.array([[1], [2], [0], [4], [5], [3]])
    right = np.array([0, 0, 0, 1, 1, 1])
    wrong = np.array([0, 0, 1, 1, 1, 1])
    scores = {s.name: s for s in score_candidates({"right": right, "wrong": wrong}, neighbors, embedding)}
    assert scores["right"].neighbor_agreement == 1.0
    assert scores["wrong"].neighbor_agreement == pytest.approx(4 / 6)   # 1->2 and 2->0 parted
    # silhouette of the right split by hand: a(i) mean distance within, b(i) to the other group
    a = np.array([1.5, 1.0, 1.5, 1.5, 1.0, 1.5])
    b = np.array([11.0, 10.0, 9.0, 9.0, 10.0, 11.0])
    assert scores["right"].silhouette == pytest.approx(float(np.mean((b - a) / np.maximum(a, b))))
    # ARI of {0,1,2 | 3,4,5} against {0,1 | 2,3,4,5}: pairs together in both 1 + 3 = 4, in the first 6,
    # in the second 1 + 6 = 7, of 15: expected 6 * 7 / 15 = 2.8, max (6 + 7) / 2 = 6.5
    ari = (4 - 2.8) / (6.5 - 2.8)
    assert scores["right"].consensus == pytest.approx(ari) and scores["wrong"].consensus == pytest.approx(ari)
    assert scores["right"].clusters_used == 2 and scores["right"].acc is None
    # chance agreement of sizes 2 and 4: (1/3)^2 + (2/3)^2 = 5/9; lift (4/6 - 5/9) / (1 - 5/9) = 1/4
    assert scores["right"].lift == pytest.approx(1.0) and scores["wrong"].lift == pytest.approx(0.25)


def test_the_choice_keeps_the_most_neighbour_pairs_together_and_the_heads_unless_clearly_beaten():
    score = lambda name, agreement, used=4: CandidateScore(name, agreement, 0.0, 0.5, 0.5, used)
    assert choose_candidate([score("heads", 0.72), score("k-means", 0.73), score("UMAP + k-means", 0.76)]) == "UMAP + k-means"
    assert choose_candidate([score("heads", 0.80), score("k-means", 0.70)]) == "heads"
    # a peer ahead by less than the margin (0.01 of the pairs) leaves the heads in place
    assert choose_candidate([score("heads", 0.9999), score("UMAP + k-means", 1.0)]) == "heads"
    assert choose_candidate([score("heads", 0.70), score("k-means", 0.7095)]) == "heads"
    assert choose_candidate([score("heads", 0.70), score("k-means", 0.7105)]) == "k-means"
    # heads collapsed into one cluster keep every pair together, yet use fewer clusters than the peers
    assert choose_candidate([score("heads", 1.0, used=1), score("k-means", 0.9)]) == "k-means"
    with pytest.raises(ValueError, match="no candidates"):
        choose_candidate([])


def test_bad_input_is_refused():
    features, _ = blobs()
    with pytest.raises(ValueError, match="as many rows"):
        peer_partitions(features, features[:10], 4)
    with pytest.raises(ValueError, match="num_clusters"):
        peer_partitions(features, features, 1)
    with pytest.raises(ValueError, match="at least two"):
        score_candidates({"one": np.zeros(4, int)}, np.zeros((4, 1), int), np.zeros((4, 2)))


def test_matched_renumbers_to_the_overlapping_ids():
    reference = np.array([0, 0, 1, 1, 2, 2])
    clusters = np.array([2, 2, 0, 0, 1, 1])   # the same partition under other ids
    assert matched(clusters, reference, 3).tolist() == reference.tolist()
    assert matched(np.array([1, 1, 1, 0, 2, 2]), reference, 3).tolist() == [0, 0, 0, 1, 2, 2]
