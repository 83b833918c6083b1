"""Refine (issue 13, part 3): the image labels a curation gives (scan_core.explore.refine), the
refine stage on a real digits run, its CLI, its refusals and its resume after SIGKILL."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from scan_core.cli import main
from scan_core.data.rundir import process_start, read_events, read_status
from scan_core.engine.run import train_run
from scan_core.explore.curation import Curation, replay
from scan_core.explore.refine import image_labels, request_refine
from scan_core.explore.results import RunResults

ROOT = Path(__file__).resolve().parent.parent


def test_image_labels_are_what_the_user_said_image_by_image():
    base = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    state = replay(base, [
        ("name_cluster", {"cluster": 1, "name": "shoe"}),
        ("name_cluster", {"cluster": 2, "name": "bag"}),
        ("move", {"images": [0], "cluster": 2}),          # moved: a label for cluster 2
        ("accept", {"images": [3, 4], "clusters": [1, 1]}),  # accepted: labels for cluster 1
        ("relabel", {"images": [5], "label": "bag"}),       # a cluster's name: cluster 2
        ("relabel", {"images": [4], "label": "boot"}),      # no cluster has it: left out
        ("outlier", {"images": [3], "outlier": True}),      # outliers: left out
        ("split", {"cluster": 2, "images": [7], "new_cluster": 3}),
        ("move", {"images": [7], "cluster": 3}),          # in a cluster a split made: the refine grows it
        ("new_cluster", {"images": [1, 2], "new_cluster": 4, "name": "hat"}),  # a cluster the user made
        ("relabel", {"images": [6], "label": "hat"}),       # its name: cluster 4
    ])
    labels = image_labels(state)
    assert labels.images.tolist() == [0, 1, 2, 5, 6, 7] and labels.clusters.tolist() == [2, 4, 4, 2, 4, 3]
    assert labels.left_out == {"labelled with a name no single cluster has": 1, "outliers": 1}


def test_a_label_naming_an_emptied_cluster_or_two_clusters_is_left_out():
    state = replay(np.array([0, 0, 1, 1, 2, 2]), [
        ("name_cluster", {"cluster": 0, "name": "cat"}),
        ("merge", {"source": 0, "target": 1}),              # "cat" now names an empty cluster
        ("relabel", {"images": [2], "label": "cat"}),
        ("name_cluster", {"cluster": 1, "name": "dog"}),
        ("name_cluster", {"cluster": 2, "name": "dog"}),    # a log from before names were unique
        ("relabel", {"images": [4], "label": "dog"}),
        ("accept", {"images": [5], "clusters": [2]}),
    ])
    labels = image_labels(state)
    assert labels.images.tolist() == [5] and labels.left_out == {"labelled with a name no single cluster has": 2}


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("refine") / "digits"
    train_run(run_dir, "digits", show_bar=False, umap=False)
    return run_dir


def matched_copy(run_dir: Path, tmp_path: Path) -> tuple[Path, RunResults, dict[int, int]]:
    """A copy of the run (``tmp_path / "run"``), its results, and the cluster matched to each class
    {class: cluster} (Hungarian on the counts, computed here)."""
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    results = RunResults.load(copy)
    table = np.zeros((10, 10))
    np.add.at(table, (results.clusters, results.images.labels), 1)
    rows, cols = linear_sum_assignment(-table)
    return copy, results, dict(zip(cols.tolist(), rows.tolist()))


def fixed_copy(run_dir: Path, tmp_path: Path, per_class: int) -> tuple[Path, np.ndarray, np.ndarray]:
    """A copy of the run where a user moved ``per_class`` misclustered images of every class to the
    cluster matched to their class (Hungarian, computed here); returns the copy, images, clusters."""
    copy, results, cluster_of = matched_copy(run_dir, tmp_path)
    labels, clusters = results.images.labels, results.clusters
    rng = np.random.default_rng(0)
    picked = []
    for label in range(10):
        wrong = np.flatnonzero((labels == label) & (clusters != cluster_of[label]))
        picked += rng.permutation(wrong)[:per_class].tolist()
    picked = np.array(sorted(picked))
    targets = np.array([cluster_of[int(labels[i])] for i in picked])
    curation = Curation(copy, clusters, results.images.ids)
    for cluster in np.unique(targets):
        curation.move(picked[targets == cluster], int(cluster))
    return copy, picked, targets


def test_refine_with_a_handful_of_labels_per_class_beats_the_run(digits_run, tmp_path, capsys):
    copy, picked, targets = fixed_copy(digits_run, tmp_path, per_class=3)
    before = RunResults.load(copy)
    curated_before = Curation(copy, before.clusters, before.images.ids).state().labels()
    assert main(["refine", str(copy), "--quiet"]) == 0
    assert f"refining with {len(picked)} image labels" in capsys.readouterr().out
    after = RunResults.load(copy)
    metrics = after.metrics
    assert metrics["final"]["stage"] == "refine" and metrics["refine"]["labels"] == len(picked)
    assert metrics["refine"]["acc"] > metrics[metrics["refine"]["from"]]["acc"] + 0.005
    assert (after.clusters[picked] == targets).all()  # the user's word, in the model's result too
    labels, clusters = after.images.labels, after.clusters
    others = np.setdiff1d(np.arange(len(labels)), picked)  # not only the labelled images moved
    moved = others[clusters[others] != before.clusters[others]]
    assert len(moved) > 0
    curated_after = Curation(copy, after.clusters, after.images.ids).state()
    assert (curated_after.labels()[picked] == curated_before[picked]).all()  # curated labels kept


def test_a_refine_asked_again_with_more_labels_runs_again_from_the_same_head(digits_run, tmp_path):
    """The request file alone plans the refine (config.json keeps its settings); asked again with
    other labels the stage runs again from the stage it first started from; a request changed behind
    a finished refine's back (its digest) makes the stage run again, not load stale clusters."""
    copy, picked, targets = fixed_copy(digits_run, tmp_path, per_class=2)
    settings = json.loads((copy / "config.json").read_text())
    assert main(["refine", str(copy), "--epochs", "3", "--quiet"]) == 0
    first = json.loads((copy / "metrics.json").read_text())["refine"]
    assert json.loads((copy / "config.json").read_text())["refine"] == settings["refine"]
    assert json.loads((copy / "refine_labels.json").read_text())["epochs"] == 3
    more, more_targets = fixed_copy(digits_run, tmp_path / "more", per_class=5)[1:]
    new = ~np.isin(more, picked)
    results = RunResults.load(copy)
    curation = Curation(copy, results.clusters, results.images.ids)
    for cluster in np.unique(more_targets[new]):
        curation.move(more[new][more_targets[new] == cluster], int(cluster))
    assert main(["refine", str(copy), "--epochs", "3", "--quiet"]) == 0
    second = json.loads((copy / "metrics.json").read_text())["refine"]
    assert second["labels"] == len(np.union1d(picked, more)) > first["labels"]
    assert second["from"] == first["from"] != "refine" and second["digest"] != first["digest"]
    assert (RunResults.load(copy).clusters[more] == more_targets).all()
    request = json.loads((copy / "refine_labels.json").read_text())
    (copy / "refine_labels.json").write_text(json.dumps({**request, "digest": "changed"}))
    runs = sum(e["kind"] == "stage_start" and e.get("stage") == "refine" for e in read_events(copy))
    train_run(copy, show_bar=False)
    assert sum(e["kind"] == "stage_start" and e.get("stage") == "refine" for e in read_events(copy)) == runs + 1


def test_refine_refuses_a_run_in_training_and_a_curation_without_image_labels(digits_run, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(digits_run, copy)
    results = RunResults.load(copy)
    Curation(copy, results.clusters, results.images.ids).name_cluster(0, "zero")  # a name is not a label
    assert main(["refine", str(copy)]) == 2
    assert "has no image labels to refine with" in capsys.readouterr().err
    status = json.loads((copy / "status.json").read_text())
    (copy / "status.json").write_text(json.dumps({**status, "state": "running", "stage": "selflabel",
                                                   "pid": os.getpid(), "pid_start": process_start(os.getpid())}))
    with pytest.raises(ValueError, match="is running: wait for its training to finish"):
        request_refine(copy)
    assert not (copy / "refine_labels.json").exists()


def test_a_killed_refine_resumes_from_its_last_epoch(digits_run, tmp_path, wait_for):
    copy, picked, _ = fixed_copy(digits_run, tmp_path, per_class=2)
    command = [sys.executable, "-m", "scan_core", "refine", str(copy), "--epochs", "400", "--quiet"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for(lambda: (copy / "checkpoints" / "refine.pt").exists(), timeout=120, process=process)
    time.sleep(0.5)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert read_status(copy).state == "interrupted"
    assert main(["refine", str(copy), "--epochs", "400", "--quiet"]) == 0
    resumed = [e["epoch"] for e in read_events(copy) if e["kind"] == "resumed" and e.get("stage") == "refine"]
    assert resumed and resumed[-1] >= 1
    assert read_status(copy).state == "finished"
    assert json.loads((copy / "metrics.json").read_text())["final"]["stage"] == "refine"


def test_spreading_reaches_the_closed_form_of_label_spreading():
    """Zhou et al.'s fixed point F* = (1 - alpha) (I - alpha S)^-1 Y, solved here densely."""
    from scan_core.method.graph import normalized_graph
    from scan_core.method.neighbors import mine_neighbors
    from scan_core.method.refine import SPREAD_STEPS, Spreading, spread_labels
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(0, 1, (40, 5)), rng.normal(6, 1, (40, 5))])
    neighbors = mine_neighbors(points, 5)
    prior = rng.dirichlet(np.ones(3), 80)
    labelled, targets = np.array([0, 45, 70]), np.array([2, 1, 0])
    spreading = Spreading(alpha=0.5, prior_weight=0.3)
    a = np.zeros((80, 80))
    for i, row in enumerate(neighbors):
        a[i, row] = a[row, i] = 1.0
    s = a / np.sqrt(np.outer(a.sum(1), a.sum(1)))
    y = 0.3 * prior
    y[labelled] = np.eye(3)[targets]
    fixed = np.linalg.solve(np.eye(80) - 0.5 * s, 0.5 * y)
    expected = fixed / fixed.sum(1, keepdims=True)
    got = spread_labels(prior, normalized_graph(neighbors), labelled, targets, spreading)
    assert np.abs(got - expected).max() < max(10 * 0.5 ** SPREAD_STEPS, 1e-6)  # float32 targets
    assert (got[labelled].argmax(1) == targets).all()


def test_the_spreading_is_chosen_from_the_labels_only_when_there_are_enough():
    from scan_core.method.graph import normalized_graph
    from scan_core.method.neighbors import mine_neighbors
    from scan_core.method.refine import MIN_LABELS_TO_CHOOSE, Spreading, choose_spreading, spread_labels
    rng = np.random.default_rng(0)
    truth = np.repeat([0, 1], 200)
    points = np.concatenate([rng.normal(0, 1, (200, 8)), rng.normal(5, 1, (200, 8))])
    neighbors = mine_neighbors(points, 10)
    graph = normalized_graph(neighbors)
    wrong_prior = np.eye(2)[1 - truth] * 0.9 + 0.05  # a model that has every image the wrong way round
    default = Spreading(0.8, 0.1)
    few = rng.choice(400, MIN_LABELS_TO_CHOOSE - 1, replace=False)
    assert choose_spreading(wrong_prior, graph, neighbors, few, truth[few], default) == default
    many = rng.choice(400, 60, replace=False)
    chosen = choose_spreading(wrong_prior, graph, neighbors, many, truth[many], default)
    assert chosen.prior_weight < default.prior_weight and chosen.held_out_accuracy >= 0.95  # labels overrule it
    spread = spread_labels(wrong_prior, graph, many, truth[many], chosen)
    assert (spread.argmax(1) == truth).mean() > 0.95


def test_the_run_images_take_the_mean_of_head_and_spread_and_labelled_ones_the_users_word():
    from scan_core.method.refine import refined_probs
    head = np.array([[0.6, 0.4], [0.2, 0.8], [0.5, 0.5]])
    spread = np.array([[0.2, 0.8], [0.4, 0.6], [0.9, 0.1]])
    got = refined_probs(head, spread, np.array([2]), np.array([1]))
    assert np.allclose(got, [[0.4, 0.6], [0.3, 0.7], [0.0, 1.0]])  # row 0: the two disagree, the spread is surer
    with pytest.raises(ValueError, match="must match"):
        refined_probs(head, spread[:2], np.array([0]), np.array([0]))


def test_labels_that_contradict_each_other_do_not_break_up_a_clean_cluster():
    """Inside one well-separated group, 40 labels say cluster 0 or 1 at random (as labels picked at
    a boundary can): they predict each other no better with a weak prior than with a strong one, yet
    a weak prior would cut the group into a patchwork; the neighbour-agreement rule keeps it whole."""
    from scan_core.method.graph import normalized_graph
    from scan_core.method.neighbors import mine_neighbors, neighbor_agreement
    from scan_core.method.refine import AGREEMENT_DROP, PRIOR_WEIGHTS, Spreading, choose_spreading, spread_labels
    rng = np.random.default_rng(1)
    points = np.concatenate([rng.normal(0, 1, (300, 8)), rng.normal(8, 1, (300, 8))])
    model = np.repeat([0, 1], 300)
    prior = np.eye(2)[model] * 0.9 + 0.05  # the model is right: one cluster per group
    neighbors = mine_neighbors(points, 10)
    graph = normalized_graph(neighbors)
    labelled = rng.choice(300, 40, replace=False)
    targets = rng.integers(0, 2, 40)
    weakest = spread_labels(prior, graph, labelled, targets, Spreading(0.9, PRIOR_WEIGHTS[0])).argmax(1)
    assert neighbor_agreement(weakest, neighbors) < neighbor_agreement(model, neighbors) - AGREEMENT_DROP  # the patchwork
    chosen = choose_spreading(prior, graph, neighbors, labelled, targets, Spreading(0.8, 0.1))
    assert chosen.neighbor_agreement >= neighbor_agreement(model, neighbors) - AGREEMENT_DROP
    kept = spread_labels(prior, graph, labelled, targets, chosen).argmax(1)
    unlabelled = np.setdiff1d(np.arange(600), labelled)
    assert (kept[unlabelled] == model[unlabelled]).mean() > 0.95


def test_the_prior_grows_to_the_curations_clusters_and_an_emptied_column_passes_its_share_on():
    from scan_core.method.refine import curated_prior
    prior = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    got = curated_prior(prior, 5, {0: 2})                     # cluster 0 merged into 2; clusters 3, 4 new
    assert np.allclose(got, [[0.0, 0.2, 0.8, 0.0, 0.0], [0.0, 0.3, 0.7, 0.0, 0.0]])
    with pytest.raises(ValueError, match="fewer than the model's 3"):
        curated_prior(prior, 2, {})
    with pytest.raises(ValueError, match="fold must map"):
        curated_prior(prior, 5, {3: 0})


@pytest.mark.parametrize("hidden, consensus", [(0, False), (16, True)])
def test_grown_heads_keep_their_columns_and_a_new_one_points_at_its_labelled_images(hidden, consensus):
    import torch

    from scan_core.method.clustering import ClusterHeads, ConsensusHeads
    from scan_core.method.refine import grow_heads
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    features = rng.normal(0, 1, (200, 6)).astype(np.float32)
    features[:20] += 4.0 * np.eye(6, dtype=np.float32)[2]        # the images of a cluster the model lacks
    members = ClusterHeads(6, 3, 2 if consensus else 1, hidden).eval()
    heads = ConsensusHeads(members, torch.tensor([[0, 1, 2], [2, 0, 1]])) if consensus else members
    x = torch.from_numpy(features)
    with torch.no_grad():
        before = heads(x)[0].numpy()
        body = (lambda t: t) if not hidden else members.heads[0][:-1]
        inner = body(x).numpy().astype(np.float64)
        old = members.heads[0] if not hidden else members.heads[0][-1]
        old_weight, old_bias = old.weight.numpy().copy(), old.bias.numpy().copy()
    labelled, targets = np.arange(10), np.full(10, 4)            # cluster 3 has no label, cluster 4 ten
    grow_heads(heads, 5, lambda index: x[index], len(features), labelled, targets)
    with torch.no_grad():
        after = heads(x)[0].numpy()
        new = members.heads[0] if not hidden else members.heads[0][-1]
        weight, bias = new.weight.numpy(), new.bias.numpy()
    assert after.shape == (200, 5) and heads.num_clusters == 5
    assert np.allclose(weight[:3], old_weight) and np.allclose(bias[:3], old_bias)
    direction = inner[:10].mean(0) - inner.mean(0)                 # by hand, in float64
    expected = np.linalg.norm(old_weight, axis=1).mean() * direction / np.linalg.norm(direction)
    assert np.allclose(weight[4], expected, atol=1e-4)
    assert np.isclose(weight[4] @ inner.mean(0) + bias[4], old_bias.mean(), atol=1e-4)  # the centre: a mean logit
    assert np.allclose(weight[3], 0) and np.isclose(bias[3], old_bias.min())
    if consensus:
        assert heads.order.tolist() == [[0, 1, 2, 3, 4], [2, 0, 1, 3, 4]]
    else:  # the old columns' logits are unchanged
        assert np.allclose(after[:, :3], before, atol=1e-5)
    assert after[:10].argmax(1).tolist().count(4) >= after[100:110].argmax(1).tolist().count(4)


def test_a_new_cluster_made_from_a_few_images_of_a_class_the_model_merged_is_learnt_by_the_refine(
        digits_run, tmp_path):
    """Two digits' clusters merged (the model, for the user, missed a class); 15 images of the
    missing digit made into a new cluster; the refine grows an eleventh column and puts most of that
    digit there, as the true labels (never shown to it) say."""
    copy, results, cluster_of = matched_copy(digits_run, tmp_path)
    labels, clusters = results.images.labels, results.clusters
    missing, kept = 3, 8
    curation = Curation(copy, clusters, results.images.ids)
    curation.merge(cluster_of[missing], cluster_of[kept])
    state = curation.state()
    pool = np.flatnonzero((labels == missing) & (state.clusters == cluster_of[kept]))
    picked = np.random.default_rng(0).permutation(pool)[:15]
    new = curation.new_cluster(picked, name="threes")
    assert new == 10 and (curation.state().clusters[labels == missing] == new).mean() < 0.1
    assert main(["refine", str(copy), "--quiet"]) == 0
    after = RunResults.load(copy)
    assert after.probs.shape == (len(labels), 11) and after.num_clusters == 11
    curated = Curation(copy, after.clusters, after.images.ids).state()
    threes = curated.clusters[labels == missing]
    assert (threes == new).mean() > 0.8                            # recall of the new cluster
    assert (labels[curated.clusters == new] == missing).mean() > 0.8  # and its precision
    assert (curated.clusters[labels == kept] == cluster_of[kept]).mean() > 0.8  # the other digit stays
    assert not len(curated.members(cluster_of[missing]))           # the merge still holds
    assert curated.names[new] == "threes"
    request = json.loads((copy / "refine_labels.json").read_text())
    assert request["num_clusters"] == 11 and request["fold"] == [[cluster_of[missing], cluster_of[kept]]]
