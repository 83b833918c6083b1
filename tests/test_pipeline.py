"""End-to-end runs on real data: digits through every stage, CLI, resume of a finished or damaged run.

Kills, cancels, refusals and disk errors: test_reliability.py."""
import json
import subprocess

import numpy as np
import pytest
import torch

from scan_core.cli import main
from scan_core.config import AugmentConfig
from scan_core.data.artifacts import load_torch, save_array
from scan_core.data.images import ImageSet
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
    # the digits bench: 0.953 +- 0.000 over three seeds, purity 0.98 (bench/RESULTS.md); seed 0 here
    assert baseline < 0.8 and metrics["scan"]["acc"] > 0.94
    assert metrics[metrics["final"]["stage"]]["acc"] > 0.94  # the run's result
    assert metrics["neighbors"]["purity"] > 0.97


def test_the_result_is_the_stage_whose_clusters_agree_more_with_the_neighbours_unless_merged(digits_run):
    # the self-label guard, checked by brute force over the saved neighbour pairs
    run_dir, metrics = digits_run
    neighbors = np.load(run_dir / "neighbors.npy")
    agreement, entropy = {}, {}
    for stage in ("scan", "selflabel"):
        clusters = np.load(run_dir / f"{stage}_probs.npy").argmax(1)
        agreement[stage] = sum(clusters[i] == clusters[j] for i in range(len(neighbors)) for j in neighbors[i]) / neighbors.size
        sizes = [int((clusters == c).sum()) for c in range(10)]
        entropy[stage] = -sum(s / len(clusters) * np.log(s / len(clusters)) for s in sizes if s)
    merged = entropy["selflabel"] < entropy["scan"] - 0.01 * np.log(10)  # clusters merged away: SCAN's kept
    expected = "selflabel" if agreement["selflabel"] >= agreement["scan"] and not merged else "scan"
    assert metrics["final"]["stage"] == expected
    assert metrics["selflabel"]["neighbor_agreement"] == pytest.approx(agreement["selflabel"], abs=1e-4)


def test_the_kept_head_has_the_lowest_loss_of_those_that_agree_with_the_others(digits_run):
    run_dir, metrics = digits_run
    scan = metrics["scan"]
    epochs = scan["snapshot_epochs"]
    assert epochs == [25, 31, 38, 44, 50]                      # the digits preset: 50 epochs, 5 snapshots
    agreement, losses, acc = (np.array(scan[key]) for key in ("head_agreement", "head_losses", "head_acc"))
    assert agreement.shape == losses.shape == acc.shape == (5, 10)
    near = agreement >= agreement.max() - 0.05 - 1e-4
    row, head = epochs.index(scan["head_epoch"]), scan["head"]
    assert near[row, head] and losses[row, head] <= losses[near].min() + 1e-4
    assert scan["kept_head_acc"] == pytest.approx(acc[row, head], abs=1e-4)
    saved = load_torch(run_dir / "scan.pt")
    assert int(saved["best_head"]) == head
    # on digits the heads agree: their consensus is no worse than the kept head (bench: equal)
    assert scan["acc"] >= scan["kept_head_acc"] - 0.005


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
    assert status["completed"] == [s for s in STAGE_NAMES if s not in ("suggest", "projection", "refine")]  # K given
    assert np.load(run_dir / "manifold.npy").shape == (n, 10)
    assert json.loads((run_dir / "report.json").read_text()) == {
        "dataset": "digits", "loaded": n, "skipped": 0, "skipped_files": []}
    assert list((run_dir / "checkpoints").iterdir()) == []     # removed once their stages finished
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert {e["stage"] for e in events if e["kind"] == "stage_end"} >= {"pretext", "scan", "selflabel"}
    steps = [e for e in events if e["kind"] == "step" and e["stage"] == "scan"]
    assert steps and steps[-1]["step"] == steps[-1]["total"] and steps[-1]["loss"] is not None


def test_a_run_mined_on_the_approximate_index_records_its_recall_and_clusters_as_well(digits_run, tmp_path):
    _, exact = digits_run
    assert exact["neighbors"]["search"] == "exact" and exact["neighbors"]["recall"] > 0.999  # ties aside
    metrics = train_run(tmp_path / "hnsw", "digits", preset="digits", show_bar=False, umap=False, exact_search_limit=0)
    assert metrics["neighbors"]["search"] == "hnsw" and 0.95 <= metrics["neighbors"]["recall"] <= 1.0
    assert json.loads((tmp_path / "hnsw" / "config.json").read_text())["exact_search_limit"] == 0
    assert metrics[metrics["final"]["stage"]]["acc"] > exact[exact["final"]["stage"]]["acc"] - 0.02  # 0.953 exact


def test_a_run_whose_index_may_not_stay_in_memory_mines_on_disk_and_clusters_as_well(digits_run, tmp_path):
    _, exact = digits_run
    metrics = train_run(tmp_path / "disk", "digits", preset="digits", show_bar=False, umap=False,
                        exact_search_limit=0, index_memory=0)
    assert metrics["neighbors"]["search"] == "ivf-disk" and 0.95 <= metrics["neighbors"]["recall"] <= 1.0
    assert json.loads((tmp_path / "disk" / "config.json").read_text())["index_memory"] == 0
    assert not list((tmp_path / "disk").glob("index-*"))  # the lists' file went once searched
    assert metrics[metrics["final"]["stage"]]["acc"] > exact[exact["final"]["stage"]]["acc"] - 0.02  # 0.953 exact


def test_rerun_of_finished_run_redoes_nothing(digits_run):
    run_dir, metrics = digits_run
    before = (run_dir / "scan_probs.npy").stat().st_mtime_ns
    again = train_run(run_dir, "digits", show_bar=False)
    assert again["scan"] == metrics["scan"]
    assert (run_dir / "scan_probs.npy").stat().st_mtime_ns == before


def test_corrupt_artifact_is_redone_not_trusted(digits_run, tmp_path):
    run_dir, original = digits_run
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(run_dir), str(copy)], check=True)
    (copy / "neighbors.npy").write_bytes((copy / "neighbors.npy").read_bytes()[:100])  # truncated
    metrics = train_run(copy, show_bar=False)
    assert np.load(copy / "neighbors.npy").shape == (1797, 20)
    final = original["final"]["stage"]
    assert metrics["final"]["stage"] == final
    for stage in ("scan", final):  # redone from the neighbours on, as good as the first time
        assert abs(metrics[stage]["acc"] - original[stage]["acc"]) <= 0.01, (stage, metrics[stage]["acc"])


def test_overclustering_works_and_is_scored_by_majority_vote(tmp_path, digits):
    """K = 15 on the ten digits (the digits preset): more than ten clusters used, each nearly pure, so
    the majority vote scores them far above the one-to-one Hungarian match (measured 0.953 and 0.79)."""
    metrics = train_run(tmp_path / "over", "digits", num_clusters=15, preset="digits", show_bar=False, umap=False)
    clusters = np.load(tmp_path / "over" / "scan_probs.npy").argmax(1)
    assert np.load(tmp_path / "over" / "scan_probs.npy").shape == (1797, 15) and len(np.unique(clusters)) > 10
    majority = sum(np.bincount(digits.labels[clusters == c]).max() for c in np.unique(clusters)) / len(clusters)
    assert metrics["scan"]["majority_acc"] == pytest.approx(majority)  # counted here cluster by cluster
    assert majority > 0.93 and metrics["scan"]["acc"] < majority - 0.1, metrics["scan"]


def test_evaluate_prints_table(digits_run, capsys):
    run_dir, metrics = digits_run
    assert main(["evaluate", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert f"{metrics['scan']['acc']:.4f}" in out and "selflabel" in out
    neighbors, clusters = np.load(run_dir / "neighbors.npy"), np.load(run_dir / "scan_probs.npy").argmax(1)
    kept = (clusters[neighbors] == clusters[:, None]).mean()
    assert f"scan chose the clusters of SCAN heads: keeps {kept:.0%} of the mined neighbour pairs together" in out
    assert "(the other candidates: k-means " in out


def test_saved_probabilities_are_the_kept_head_on_the_clean_features(tmp_path):
    # with augmented feature banks (the tiny preset keeps one), heads train on augmented views,
    # but pseudo-labels and the saved probabilities must come from the un-augmented features
    run_dir = tmp_path / "banks"
    train_run(run_dir, "digits", preset="tiny", show_bar=False)
    config = json.loads((run_dir / "config.json").read_text())
    assert config["feature_views"] >= 1 and config["head_input"] == "features"
    features = torch.as_tensor(np.load(run_dir / "features.npy"))
    for stage in ("scan", "selflabel"):
        saved = torch.load(run_dir / f"{stage}.pt", weights_only=True)
        # every head (the scan stage; self-labeling of the consensus), or the kept one (self-labeling of it)
        count = len({key.split(".")[1] for key in saved["heads"]})
        heads = ClusterHeads(features.shape[1], 10, count, config["scan"]["hidden"]).eval()
        heads.load_state_dict(saved["heads"])
        with torch.no_grad():
            every = torch.softmax(heads(features), 2).numpy()       # (H, N, K)
        # the consensus: head h's cluster j counts for cluster order[h, j]; the mean over heads.
        # Without one (it merged clusters away), the kept head alone: itself in its own order
        order = saved["consensus"].numpy() if "consensus" in saved else None
        if order is None:
            kept = int(saved["best_head"]) if count > 1 else 0
            assert np.allclose(np.load(run_dir / f"{stage}_probs.npy"), every[kept], atol=1e-5)
            continue
        expected = np.zeros_like(every)
        for h in range(len(every)):
            for j in range(10):
                expected[h, :, order[h, j]] = every[h, :, j]
        assert np.allclose(np.load(run_dir / f"{stage}_probs.npy"), expected.mean(0), atol=1e-5), stage


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


def test_auto_gives_grayscale_images_the_hog_manifold_unless_a_backbone_is_asked_for():
    gray = make_config("/some/folder", 5, 2000, 40, 1, "auto")
    assert (gray.head_input, gray.hog_dim, gray.manifold_dims, gray.neighbor_space) == ("hog", 32, 10, "manifold")
    assert gray.uses_backbone is False and gray.augment.flip is False
    own = make_config("/some/folder", 5, 2000, 40, 1, "auto", backbone="small-cnn")  # the user's choice: SimCLR
    assert own.head_input == "features" and own.uses_backbone and own.pretext.epochs > 0 and own.augment.flip is False


def test_a_plan_cuts_simclr_to_the_epochs_it_returns(digits):
    from scan_core.config import PretextConfig
    from scan_core.method.pretext import PROBE_STEPS, SimCLRModel, train_simclr
    images = digits.images[:640]  # batch 64: 10 steps an epoch
    asked, totals = [], []
    model = SimCLRModel(build_backbone("small-cnn", 1, 4), out_dim=8)
    train_simclr(model, images, PretextConfig(epochs=5, batch_size=64), AugmentConfig(flip=False), torch.device("cpu"),
                 on_step=lambda step, total, loss: totals.append((step, total)),
                 plan=lambda seconds, steps: asked.append((seconds, steps)) or 2)
    assert len(asked) == 1 and asked[0][0] > 0 and asked[0][1] == 10
    assert totals[PROBE_STEPS + 1][1] == 20 and totals[-1] == (20, 20)  # 2 epochs of 10 steps, not 5


def test_a_time_budget_is_kept_and_written_down(tmp_path):
    run_dir = tmp_path / "budget"  # digits, 3 SimCLR epochs of 14 steps asked; a 1 s budget leaves room for 1
    metrics = train_run(run_dir, "digits", preset="tiny", show_bar=False, pretext={"epochs": 3}, time_budget=1.0)
    plan = json.loads((run_dir / "pretext_plan.json").read_text())
    assert (plan["asked"], plan["epochs"], plan["seconds_left"]) == (3, 1, 0.0)
    assert metrics["pretext"]["budget"]["epochs"] == 1
    steps = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    last = [e for e in steps if e.get("stage") == "pretext" and e.get("kind") == "step"][-1]
    assert (last["step"], last["total"]) == (14, 14)  # ends after one epoch of 1,797 // 128 steps


def test_a_resumed_run_keeps_its_plan_only_when_an_epoch_was_saved(tmp_path):
    from types import SimpleNamespace

    from scan_core.engine.stages.pretext import PLAN, budget_plan
    ctx = SimpleNamespace(dir=tmp_path)
    (tmp_path / PLAN).write_text(json.dumps({"epochs": 4}))
    assert budget_plan(ctx) is None  # killed before an epoch was saved: plan afresh
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "pretext.pt").write_bytes(b"x")
    assert budget_plan(ctx) == {"epochs": 4}  # its saved epochs were counted against that plan


def colour_shapes(folder) -> None:
    """3 shapes x 30 images in ``folder/<shape>/``, each in a random colour on another random colour."""
    from PIL import Image, ImageDraw
    rng = np.random.default_rng(0)
    for shape in ("disc", "square", "cross"):
        (folder / shape).mkdir(parents=True)
        for i in range(30):
            fg, bg = (tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(2))
            image = Image.new("RGB", (48, 48), bg)
            draw, a, b = ImageDraw.Draw(image), int(rng.integers(4, 12)), int(rng.integers(34, 44))
            if shape == "disc":
                draw.ellipse((a, a, b, b), fill=fg)
            elif shape == "square":
                draw.rectangle((a, a, b, b), fill=fg)
            else:
                draw.rectangle((a, 21, b, 27), fill=fg)
                draw.rectangle((21, a, 27, b), fill=fg)
            image.save(folder / shape / f"{i}.png")


def test_auto_clusters_colour_shapes_with_a_frozen_pretrained_backbone(tmp_path):
    colour_shapes(tmp_path / "shapes")
    metrics = train_run(tmp_path / "run", str(tmp_path / "shapes"), show_bar=False, umap=False)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (config["backbone"], config["pretext"]["epochs"]) == ("efficientnet-lite0-imagenet", 0)
    assert "frozen" in metrics["pretext"]["method"]
    ids = np.load(tmp_path / "run" / "images" / "ids.npy")  # "disc/7.png": the class is the folder
    labels = np.array([["cross", "disc", "square"].index(str(i).split("/")[0]) for i in ids])
    result = np.load(tmp_path / "run" / f"{metrics['final']['stage']}_probs.npy").argmax(1)
    assert hungarian_accuracy(result, labels) >= 0.9  # pixels' k-means: near chance on such colours


def test_the_class_view_gives_features_and_lifted_class_scores_and_records_the_probabilities(tmp_path, capsys):
    """``--class-view``: the backbone's features and its lifted class scores side by side in
    ``features.npy``, and its class probabilities recorded for names, from one pass."""
    from scan_core.cli import main
    from scan_core.method.naming import imagenet_taxonomy
    colour_shapes(tmp_path / "shapes")
    run = tmp_path / "run"
    assert main(["train", "--dataset", str(tmp_path / "shapes"), "--out", str(run), "--class-view", "--quiet", "--no-umap",
                 "--scan-epochs", "5", "--selflabel-epochs", "1"]) == 0
    assert json.loads((run / "config.json").read_text())["class_view"] is True
    features = np.load(run / "features.npy")
    assert features.shape[1] == 1280 + imagenet_taxonomy().covers.shape[1]
    # both halves weigh the same: each a unit vector, the whole normalised again (1/sqrt 2 each)
    assert np.allclose(np.linalg.norm(features[:, :1280], axis=1), 0.5 ** 0.5, atol=1e-4)
    assert np.allclose(np.linalg.norm(features[:, 1280:], axis=1), 0.5 ** 0.5, atol=1e-4)
    assert np.allclose(np.load(run / "class_probs.npy").astype(np.float32).sum(1), 1, atol=0.01)
    capsys.readouterr()
    assert main(["train", "--dataset", "digits", "--out", str(tmp_path / "gray"), "--class-view", "--quiet"]) == 2
    assert "class_view needs a frozen backbone with its ImageNet classifier" in capsys.readouterr().err


def test_the_scan_stage_keeps_the_candidate_that_keeps_most_neighbour_pairs_together(digits_run):
    run_dir, metrics = digits_run
    scan = metrics["scan"]
    assert [c["name"] for c in scan["candidates"]] == ["SCAN heads", "k-means", "UMAP + k-means", "UMAP + Ward"]
    neighbors = np.load(run_dir / "neighbors.npy")
    clusters = np.load(run_dir / "scan_probs.npy").argmax(1)
    agreement = float((clusters[neighbors] == clusters[:, None]).mean())  # by brute force
    chosen = next(c for c in scan["candidates"] if c["name"] == scan["chosen"])
    assert chosen["neighbor_agreement"] == pytest.approx(agreement, abs=1e-4)
    assert all(c["neighbor_agreement"] <= agreement + 1e-4 for c in scan["candidates"])
    assert scan["chosen"] == "SCAN heads" and scan["acc"] >= 0.94  # on digits the heads beat every peer (bench)


def test_a_peer_that_keeps_more_neighbours_together_is_taught_to_the_head(tmp_path):
    """Heads that barely learn (one epoch at a learning rate of 1e-8) lose to the standard clusterings;
    the chosen one becomes the scan
    stage's clusters, and its head classifies the images (new ones too) as that partition does."""
    from scan_core.data.sources import load_source
    from scan_core.engine.inference import apply_run
    colour_shapes(tmp_path / "shapes")
    metrics = train_run(tmp_path / "run", str(tmp_path / "shapes"), show_bar=False, umap=False, scan={"epochs": 1, "lr": 1e-8},
                        selflabel={"epochs": 1})
    scan = metrics["scan"]
    assert scan["chosen"] != "SCAN heads"
    run = tmp_path / "run"
    neighbors = np.load(run / "neighbors.npy")
    clusters = np.load(run / "scan_probs.npy").argmax(1)
    chosen = next(c for c in scan["candidates"] if c["name"] == scan["chosen"])
    assert float((clusters[neighbors] == clusters[:, None]).mean()) == pytest.approx(chosen["neighbor_agreement"], abs=0.02)
    assert scan["acc"] == pytest.approx(chosen["acc"], abs=0.02) and scan["acc"] >= 0.9
    applied = apply_run(run, load_source(str(tmp_path / "shapes"), image_size=ImageSet.load(run / "images").images.shape[1]))
    assert (applied.probs["scan"].argmax(1) == clusters).mean() >= 0.9


def test_review_lists_the_queue_from_the_command_line(digits_run, capsys):
    run_dir, _ = digits_run
    assert main(["review", str(run_dir), "--top", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "1,797 images to review, most doubtful first" and len(lines) == 7
    assert "its mined neighbours" in lines[2] and "its nearest in the features" in lines[2]
    assert main(["review", str(run_dir), "--top", "0"]) == 2


def shape_image(kind: str, rng: np.random.Generator, size: int = 32, colour: bool = False):
    """A disc, square, triangle or cross in a random grey (or colour) on another, at a random size,
    place and angle."""
    from PIL import Image, ImageDraw
    channels = 3 if colour else 1
    fg, bg = rng.integers(0, 256, (2, channels))
    while np.abs(fg - bg).max() < 60:
        fg, bg = rng.integers(0, 256, (2, channels))
    fg, bg = (tuple(int(v) for v in c) if colour else int(c[0]) for c in (fg, bg))
    big = 4 * size
    image = Image.new("RGB" if colour else "L", (big, big), bg)
    radius = rng.uniform(0.22, 0.38) * big
    centre = rng.uniform(radius + 4, big - radius - 4, 2)
    angle = rng.uniform(0, 2 * np.pi)
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    w, t = radius / 3, np.array([0, 2 * np.pi / 3, 4 * np.pi / 3])
    corners = {"square": [np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * radius / np.sqrt(2)],
               "triangle": [radius * np.stack([np.cos(t), np.sin(t)], 1)],
               "cross": [np.array([[-radius, -w], [radius, -w], [radius, w], [-radius, w]]),
                         np.array([[-w, -radius], [w, -radius], [w, radius], [-w, radius]])]}
    draw = ImageDraw.Draw(image)
    if kind == "disc":
        draw.ellipse((*(centre - radius), *(centre + radius)), fill=fg)
    for polygon in corners.get(kind, []):
        draw.polygon([tuple(centre + p) for p in polygon @ turn.T], fill=fg)
    return image.resize((size, size), Image.Resampling.LANCZOS)


def test_auto_groups_grayscale_shapes_by_shape_where_pixels_cannot(tmp_path):
    # a folder nobody tuned for: the grey levels, sizes, places and angles say nothing of the class
    # (600 images here; on 2,000 such images the README's bench measures 0.99)
    rng = np.random.default_rng(0)
    kinds = ("disc", "square", "triangle", "cross")
    for kind in kinds:
        (tmp_path / "shapes" / kind).mkdir(parents=True)
        for i in range(150):
            shape_image(kind, rng).save(tmp_path / "shapes" / kind / f"{i}.png")
    metrics = train_run(tmp_path / "run", str(tmp_path / "shapes"), show_bar=False, umap=False)
    labels = np.load(tmp_path / "run" / "images" / "labels.npy")
    pixels = np.asarray(ImageSet.load(tmp_path / "run" / "images").images).reshape(len(labels), -1).astype(np.float32)
    baseline = hungarian_accuracy(spherical_kmeans(pixels, 4, seed=0), labels)
    # measured 0.74, 0.28: UMAP + k-means keeps 2% more neighbour pairs together than the heads (0.767) and is chosen
    assert baseline < 0.4 and metrics["scan"]["acc"] > 0.72, (metrics["scan"]["acc"], baseline)


def test_without_the_colour_weights_auto_groups_colour_shapes_by_shape(tmp_path, monkeypatch, capsys):
    # as if the packages with the ImageNet weights were missing: the HOG manifold, said in a note;
    # the shapes' colours are random, so only their outlines tell them apart
    from scan_core import presets
    assert "efficientnet-lite0-imagenet" in [spec.name for spec in presets.present_backbones()]  # requirements.txt
    monkeypatch.setattr(presets, "present_backbones", lambda: [])
    rng = np.random.default_rng(1)
    kinds = ("disc", "square", "triangle", "cross")
    for kind in kinds:
        (tmp_path / "shapes" / kind).mkdir(parents=True)
        for i in range(150):
            shape_image(kind, rng, colour=True).save(tmp_path / "shapes" / kind / f"{i}.png")
    assert main(["train", "--dataset", str(tmp_path / "shapes"), "--out", str(tmp_path / "run"), "--no-umap", "--quiet"]) == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["head_input"] == "hog" and config["note"].startswith(presets.NO_COLOUR_BACKBONE)
    assert "; offline (SCAN_EXPLORER_OFFLINE=1 or --offline): dinov2-vits14" in config["note"]  # the tests' setting
    assert f"note: {config['note']}" in capsys.readouterr().out.splitlines()
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    labels = np.load(tmp_path / "run" / "images" / "labels.npy")
    pixels = np.asarray(ImageSet.load(tmp_path / "run" / "images").images).reshape(len(labels), -1).astype(np.float32)
    baseline = hungarian_accuracy(spherical_kmeans(pixels, 4, seed=0), labels)
    assert baseline < 0.4 and metrics["scan"]["acc"] > 0.85, (metrics["scan"]["acc"], baseline)  # 0.925


def test_frozen_heads_draw_each_image_from_one_of_the_feature_banks_in_the_order_asked(tmp_path, digits):
    """With feature banks ``(V, N, D)`` (a strong view each, saved by the run), an augmented batch is,
    row by row, image ``index[i]`` in a bank drawn at random for it; the clean input is the features."""
    config = make_config("digits", 10, len(digits), 16, 1, preset="tiny", feature_views=3)
    n, dims = len(digits), 4
    features = np.arange(n * dims, dtype=np.float32).reshape(n, dims)
    banks = np.stack([features + 0.25 * (view + 1) for view in range(3)])  # bank v: every value + (v + 1) / 4
    save_array(tmp_path / "feature_banks.npy", banks)
    ctx = RunContext(tmp_path, config, torch.device("cpu"), Progress(tmp_path, show_bar=False), images=digits,
                     features=features)
    _, augmented, clean = cluster_model(ctx, ClusterHeads(dims, 10))
    index = np.random.default_rng(0).permutation(n)[:300]
    drawn = augmented(index).numpy()
    offset = drawn - features[index]  # which bank each row came from, and that it is image index[i]
    assert np.allclose(offset, offset[:, :1]) and set(np.round(offset[:, 0] * 4).astype(int)) == {1, 2, 3}
    assert np.array_equal(clean(index).numpy(), features[index])


def test_auto_uses_a_stronger_backbone_present_and_records_it(tmp_path, dinov2_weights, capsys):
    # a DINOv2 ViT-S/14 checkpoint stands in for downloaded weights (random: its clusters mean nothing)
    from scan_core.costs import PRETRAINED_COSTS
    rng = np.random.default_rng(2)
    for kind in ("disc", "square"):
        (tmp_path / "shapes" / kind).mkdir(parents=True)
        for i in range(20):
            shape_image(kind, rng, colour=True).save(tmp_path / "shapes" / kind / f"{i}.png")
    budget = 2.5 * PRETRAINED_COSTS["cpu"]["dinov2-vits14"] * 40 / 0.7   # room for the clean pass and one bank
    assert main(["train", "--dataset", str(tmp_path / "shapes"), "--out", str(tmp_path / "run"), "--no-umap",
                 "--quiet", "--time-budget", f"{budget:.1f}", "--scan-epochs", "2", "--selflabel-epochs", "1"]) == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (config["backbone"], config["pretrained_size"], config["feature_views"]) == ("dinov2-vits14", 224, 1)
    assert config["note"].startswith("dinov2-vits14 (DINOv2, self-supervised")
    assert f"note: {config['note']}" in capsys.readouterr().out.splitlines()
    assert np.load(tmp_path / "run" / "features.npy").shape == (40, 384)


def test_feature_banks_over_the_size_limit_are_float16_and_train_as_float32_ones(tmp_path):
    runs = {}
    for name, limit in (("float32", None), ("float16", 0)):
        overrides = {} if limit is None else {"float16_above": limit}
        metrics = train_run(tmp_path / name, "digits", 10, preset="tiny", show_bar=False, **overrides)
        runs[name] = (np.load(tmp_path / name / "feature_banks.npy"), metrics["scan"]["acc"])
    (half, half_acc), (full, full_acc) = runs["float16"], runs["float32"]
    assert half.dtype == np.float16 and full.dtype == np.float32 and half.shape == full.shape
    assert np.abs(half.astype(np.float32) - full).max() <= 5e-4 * np.abs(full).max()  # float16: 2^-11 relative
    assert abs(half_acc - full_acc) < 0.02, (half_acc, full_acc)


def test_the_loss_flag_trains_the_heads_with_temi_and_records_it(tmp_path, capsys):
    # the grayscale shapes of the test above, fewer: TEMI's heads group them by shape too (0.93 measured)
    rng = np.random.default_rng(0)
    for kind in ("disc", "square", "triangle", "cross"):
        (tmp_path / "shapes" / kind).mkdir(parents=True)
        for i in range(80):
            shape_image(kind, rng).save(tmp_path / "shapes" / kind / f"{i}.png")
    args = ["train", "--dataset", str(tmp_path / "shapes"), "--out", str(tmp_path / "run"), "--no-umap", "--quiet",
            "--selflabel-epochs", "1"]
    assert main([*args, "--loss", "temi"]) == 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["scan"]["loss"] == "temi"
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    labels = np.load(tmp_path / "run" / "images" / "labels.npy")
    pixels = np.asarray(ImageSet.load(tmp_path / "run" / "images").images).reshape(len(labels), -1).astype(np.float32)
    baseline = hungarian_accuracy(spherical_kmeans(pixels, 4, seed=0), labels)
    assert metrics["scan"]["loss"] == "temi" and metrics["scan"]["acc"] > baseline + 0.3, (metrics["scan"]["acc"], baseline)
    with pytest.raises(SystemExit) as refused:
        main([*args, "--out", str(tmp_path / "other"), "--loss", "dec"])
    error = capsys.readouterr().err
    assert refused.value.code == 2 and "argument --loss: invalid choice: 'dec'" in error and "'temi'" in error
