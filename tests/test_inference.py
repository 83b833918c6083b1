"""A finished run applied to images it did not train on (the published train -> test protocol)."""
import json

import numpy as np
import pytest
from PIL import Image

from scan_core.cli import main
from scan_core.data.images import ImageSet
from scan_core.data.sources import load_digits
from scan_core.engine.inference import apply_run, evaluate_on
from scan_core.engine.run import train_run
from scan_core.method.cosine import spherical_kmeans
from scan_core.method.metrics import hungarian_accuracy


def write_folder(root, images: ImageSet, index, labelled=True):
    for i in index:
        folder = root / images.class_names[images.labels[i]] if labelled else root
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images.images[i, :, :, 0]).save(folder / f"{i:04d}.png")
    return root


@pytest.fixture(scope="module")
def split_run(tmp_path_factory):
    """The digits preset trained on 1200 digits from a folder; the other 597 kept apart."""
    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits))
    root = tmp_path_factory.mktemp("split")
    write_folder(root / "train", digits, order[:1200])
    write_folder(root / "test", digits, order[1200:])
    write_folder(root / "unlabelled", digits, order[1200:1300], labelled=False)
    run_dir = root / "run"
    metrics = train_run(run_dir, str(root / "train"), preset="digits", image_size=16, show_bar=False, umap=False)
    return root, run_dir, metrics


def test_applying_a_run_to_its_own_images_gives_its_saved_probabilities(split_run):
    _, run_dir, _ = split_run
    applied = apply_run(run_dir, ImageSet.load(run_dir / "images"), device="cpu")
    assert np.allclose(applied.features, np.load(run_dir / "features.npy"), atol=1e-5)
    for stage in ("scan", "selflabel"):
        assert np.allclose(applied.probs[stage], np.load(run_dir / f"{stage}_probs.npy"), atol=1e-5), stage


def test_held_out_digits_score_close_to_the_training_split(split_run):
    root, run_dir, metrics = split_run
    scores = evaluate_on(run_dir, str(root / "test"), device="cpu")
    train = ImageSet.load(run_dir / "images")
    pixels = np.asarray(train.images).reshape(len(train), -1).astype(np.float32)
    baseline = hungarian_accuracy(spherical_kmeans(pixels, 10, seed=0), train.labels)
    for stage in ("scan", "selflabel"):
        assert set(scores[stage]) >= {"acc", "nmi", "ari"}
        assert abs(scores[stage]["acc"] - metrics[stage]["acc"]) < 0.08, stage
    assert scores[metrics["final"]["stage"]]["acc"] > baseline  # the run's result, on images it never saw


def test_finetuned_encoder_is_used_for_new_images(tmp_path):
    run_dir = tmp_path / "finetune"
    train_run(run_dir, "digits", preset="tiny", scan_mode="finetune", show_bar=False)
    applied = apply_run(run_dir, ImageSet.load(run_dir / "images"), device="cpu")
    for stage in ("scan", "selflabel"):
        assert np.allclose(applied.probs[stage], np.load(run_dir / f"{stage}_probs.npy"), atol=1e-4), stage


def test_cli_scores_a_run_on_another_dataset(split_run, capsys):
    root, run_dir, _ = split_run
    assert main(["evaluate", str(run_dir), "--on", str(root / "test"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "scored on" in out and "scan" in out and "selflabel" in out


def test_images_the_run_cannot_take_are_refused_by_name(split_run, tmp_path, capsys):
    root, run_dir, _ = split_run
    big = ImageSet.load(run_dir / "images")
    big = ImageSet(name="big", images=np.zeros((3, 28, 28, 1), np.uint8), ids=big.ids[:3], paths=big.paths[:3])
    with pytest.raises(ValueError, match="big: images are 28x28x1 .* 16x16x1"):
        apply_run(run_dir, big)
    with pytest.raises(ValueError, match="no labels"):
        evaluate_on(run_dir, str(root / "unlabelled"))
    with pytest.raises(ValueError, match="not a run directory"):
        evaluate_on(tmp_path, str(root / "test"))
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.json").write_text((run_dir / "config.json").read_text())
    (unfinished / "status.json").write_text(json.dumps({"state": "running", "completed": ["images", "pretext"]}))
    with pytest.raises(ValueError, match="has not finished its scan stage"):
        apply_run(unfinished, big)
    assert main(["evaluate", str(run_dir), "--on", str(root / "unlabelled")]) == 2
    assert "no labels" in capsys.readouterr().err
