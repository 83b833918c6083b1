"""End-to-end runs on real data: digits through every stage, CLI, resume of a finished or damaged run.

Kills, cancels, refusals and disk errors: test_reliability.py."""
import json
import subprocess

import numpy as np
import pytest
import torch

from scan_core.cli import main
from scan_core.config import AugmentConfig
from scan_core.data.rundir import STAGE_NAMES
from scan_core.engine.context import RunContext
from scan_core.engine.models import cluster_model
from scan_core.engine.progress import Progress
from scan_core.engine.run import train_run
from scan_core.method.backbones import build_backbone
from scan_core.method.clustering import ClusterHeads
from scan_core.method.cosine import spherical_kmeans
from scan_core.method.metrics import hungarian_accuracy
from scan_core.presets import make_config


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A finished digits run with the real digits preset (about 20 s on 2 cores)."""
    run_dir = tmp_path_factory.mktemp("runs") / "digits"
    metrics = train_run(run_dir, "digits", preset="digits", show_bar=False, umap=False)
    return run_dir, metrics


def test_digits_run_beats_kmeans_on_pixels(digits_run, digits):
    run_dir, metrics = digits_run
    pixels = digits.images.reshape(len(digits), -1).astype(np.float32)
    baseline = hungarian_accuracy(spherical_kmeans(pixels, 10, seed=0), digits.labels)
    assert metrics["scan"]["acc"] > baseline + 0.03
    assert metrics[metrics["final"]["stage"]]["acc"] > baseline + 0.03  # the run's result
    assert metrics["neighbors"]["purity"] > 0.85


def test_the_result_is_the_stage_whose_clusters_agree_more_with_the_neighbours(digits_run):
    # the self-label guard, checked by brute force over the saved neighbour pairs
    run_dir, metrics = digits_run
    neighbors = np.load(run_dir / "neighbors.npy")
    agreement = {}
    for stage in ("scan", "selflabel"):
        clusters = np.load(run_dir / f"{stage}_probs.npy").argmax(1)
        agreement[stage] = sum(clusters[i] == clusters[j] for i in range(len(neighbors)) for j in neighbors[i]) / neighbors.size
    expected = "selflabel" if agreement["selflabel"] >= agreement["scan"] else "scan"
    assert metrics["final"]["stage"] == expected
    assert metrics["selflabel"]["neighbor_agreement"] == pytest.approx(agreement["selflabel"], abs=1e-4)


def test_the_kept_head_is_the_one_that_agrees_most_with_the_others(digits_run):
    run_dir, metrics = digits_run
    scan = metrics["scan"]
    agreement = np.array(scan["head_agreement"])
    tied = np.flatnonzero(agreement >= agreement.max() - 1e-4)
    assert scan["head"] in tied and len(scan["head_acc"]) == len(agreement) == 10
    assert scan["acc"] == pytest.approx(scan["head_acc"][scan["head"]], abs=1e-4)


def test_digits_run_writes_every_artifact(digits_run, digits):
    run_dir, metrics = digits_run
    n = len(digits)
    assert np.load(run_dir / "neighbors.npy").shape == (n, 20)
    for stage in ("scan", "selflabel"):
        probs = np.load(run_dir / f"{stage}_probs.npy")
        assert probs.shape == (n, 10)
        assert np.allclose(probs.sum(1), 1, atol=1e-4)
        assert {"acc", "nmi", "ari", "seconds"} <= set(metrics[stage])
    assert {"acc", "nmi", "ari", "seconds"} <= set(metrics["pretext"])
    config = json.loads((run_dir / "config.json").read_text())
    assert config["num_clusters"] == 10 and config["dataset"] == "digits" and "torch" in config["versions"]
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "finished" and status["error"] is None and status["stage"] is None
    assert status["completed"] == [s for s in STAGE_NAMES if s != "projection"]  # the digits preset has a manifold
    assert np.load(run_dir / "manifold.npy").shape == (n, 10)
    assert json.loads((run_dir / "report.json").read_text()) == {
        "dataset": "digits", "loaded": n, "skipped": 0, "skipped_files": []}
    assert list((run_dir / "checkpoints").iterdir()) == []     # removed once their stages finished
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert {e["stage"] for e in events if e["kind"] == "stage_end"} >= {"pretext", "scan", "selflabel"}
    steps = [e for e in events if e["kind"] == "step" and e["stage"] == "scan"]
    assert steps and steps[-1]["step"] == steps[-1]["total"] and steps[-1]["loss"] is not None


def test_rerun_of_finished_run_redoes_nothing(digits_run):
    run_dir, metrics = digits_run
    before = (run_dir / "scan_probs.npy").stat().st_mtime_ns
    again = train_run(run_dir, "digits", show_bar=False)
    assert again["scan"] == metrics["scan"]
    assert (run_dir / "scan_probs.npy").stat().st_mtime_ns == before


def test_corrupt_artifact_is_redone_not_trusted(digits_run, tmp_path):
    run_dir, _ = digits_run
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(run_dir), str(copy)], check=True)
    (copy / "neighbors.npy").write_bytes((copy / "neighbors.npy").read_bytes()[:100])  # truncated
    metrics = train_run(copy, show_bar=False)
    assert np.load(copy / "neighbors.npy").shape == (1797, 20)
    assert metrics["scan"]["acc"] > 0.5


def test_overclustering_works_and_is_scored_by_majority_vote(tmp_path):
    metrics = train_run(tmp_path / "over", "digits", num_clusters=15, preset="tiny", show_bar=False)
    assert np.load(tmp_path / "over" / "scan_probs.npy").shape == (1797, 15)
    assert metrics["scan"]["majority_acc"] >= metrics["scan"]["acc"]


def test_evaluate_prints_table(digits_run, capsys):
    run_dir, metrics = digits_run
    assert main(["evaluate", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert f"{metrics['scan']['acc']:.4f}" in out and "selflabel" in out


def test_saved_probabilities_are_the_kept_head_on_the_clean_features(tmp_path):
    # with augmented feature banks (the tiny preset keeps one), heads train on augmented views,
    # but pseudo-labels and the saved probabilities must come from the un-augmented features
    run_dir = tmp_path / "banks"
    train_run(run_dir, "digits", preset="tiny", show_bar=False)
    config = json.loads((run_dir / "config.json").read_text())
    assert config["feature_views"] >= 1 and config["head_input"] == "features"
    features = torch.as_tensor(np.load(run_dir / "features.npy"))
    for stage, num_heads in (("scan", config["scan"]["num_heads"]), ("selflabel", 1)):
        saved = torch.load(run_dir / f"{stage}.pt", weights_only=True)
        heads = ClusterHeads(features.shape[1], 10, num_heads, config["scan"]["hidden"]).eval()
        heads.load_state_dict(saved["heads"])
        with torch.no_grad():
            expected = torch.softmax(heads(features)[int(saved["best_head"])], 1).numpy()
        assert np.allclose(np.load(run_dir / f"{stage}_probs.npy"), expected, atol=1e-5), stage


def test_kmeans_leaves_its_input_untouched():
    features = np.random.default_rng(0).normal(size=(200, 8)).astype(np.float32) * 3
    before = features.copy()
    assert len(np.unique(spherical_kmeans(features, 3))) == 3
    assert np.array_equal(features, before)


def test_finetune_augmented_views_keep_the_order_of_the_index(tmp_path, digits):
    # end-to-end heads pair anchors with partners and strong with weak views by position: the
    # augmented batch must come back in the order asked for, not sorted
    gentle = AugmentConfig(crop_scale=(1.0, 1.0), flip=False, strong_ops=0, cutout=0.0)
    config = make_config("digits", 10, len(digits), 16, 1, preset="tiny", scan_mode="finetune", augment=gentle)
    ctx = RunContext(tmp_path, config, torch.device("cpu"), Progress(tmp_path, show_bar=False), images=digits,
                     encoder=build_backbone(config.backbone, 1, config.backbone_width))
    _, augmented, clean = cluster_model(ctx, ClusterHeads(ctx.encoder.feature_dim, 10))
    index = np.random.default_rng(0).permutation(len(digits))[:200]
    views, originals = augmented(index).flatten(1), clean(index).flatten(1)
    nearest = torch.cdist(views, originals).argmin(1)
    assert (nearest == torch.arange(len(index))).float().mean() > 0.9


def test_auto_never_flips_grayscale_images_and_keeps_flips_for_colour():
    # a flip turns a 2 into something else; photos of things stay what they are
    gray = make_config("/some/folder", 5, 2000, 28, 1, "auto")
    colour = make_config("/some/folder", 5, 2000, 64, 3, "auto")
    assert gray.augment.flip is False and colour.augment.flip is True
