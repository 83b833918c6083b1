"""Suggesting the number of clusters (scan_core.method.num_clusters), the suggest stage of a run
with ``--clusters auto``, its CLI and its evidence on the Clusters page."""
from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from scan_core.cli import main
from scan_core.engine.run import train_run
from scan_core.method.manifold import fit_manifold
from scan_core.method.num_clusters import KSuggestion, group_split, ordinal, suggest_num_clusters
from ui.suggest import SEPARATION


def blobs(counts: list[int], dims: int = 16, spread: float = 0.05, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian groups of ``counts`` points around random unit centres (far apart in ``dims``-d)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((len(counts), dims))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = np.repeat(np.arange(len(counts)), counts)
    return (centres[labels] + spread * rng.standard_normal((len(labels), dims))).astype(np.float32), labels


def test_groups_far_apart_are_counted_exactly():
    """6 groups of unequal sizes, far apart (unit centres, spread 0.1 in 16-d), mapped by UMAP here."""
    counts = [300, 250, 200, 150, 100, 60]
    points, _ = blobs(counts, spread=0.1)
    suggestion = suggest_num_clusters(points, max_k=12)
    assert suggestion.k == 6 and suggestion.ks.tolist() == list(range(2, 13))
    assert suggestion.separation_at(6) > 0.9  # every image far closer to its own group than to the next
    size, first, second = suggestion.split
    assert size in counts and first + second == size  # a 7th group halves one of the groups, nothing else
    assert suggestion.reason().startswith("K = 6: at 6 groups")


def test_the_group_one_more_cluster_would_split_is_named():
    """On a map given as it is: five tight groups 10 apart and a sixth made of two tight halves (70
    and 50 images) 1 apart. Six groups separate best (the halves' distance is small beside 10); the
    7th group k-means adds cuts the sixth group of 120 into its halves: it holds by far the most spread."""
    rng = np.random.default_rng(1)
    centres = 10 * np.eye(10)[:6]
    halves = np.stack([centres[5], centres[5] + np.eye(10)[6]])
    points = np.concatenate([*(c + 0.05 * rng.standard_normal((100, 10)) for c in centres[:5]),
                             halves[0] + 0.05 * rng.standard_normal((70, 10)),
                             halves[1] + 0.05 * rng.standard_normal((50, 10))]).astype(np.float32)
    suggestion = suggest_num_clusters(points, points, max_k=10)
    assert suggestion.k == 6 and suggestion.split == (120, 70, 50)
    assert suggestion.reason().endswith("A 7th group would split a group of 120 images in two (70 and 50 of them)")


def test_the_split_group_is_read_from_the_two_partitions():
    """Hand-worked: coarse groups 0 (images 0-4) and 1 (5-7); the finer partition puts 0-1 in one
    group, 2-4 in another, 5-7 in a third: group 0 (5 images) splits into 3 and 2."""
    coarse = np.array([0, 0, 0, 0, 0, 1, 1, 1])
    assert group_split(coarse, np.array([0, 0, 2, 2, 2, 1, 1, 1])) == (5, 3, 2)
    # fine group 3 holds 1 of group 0 and 2 of group 1: it comes from group 1, which splits into 2 and 1
    assert group_split(np.array([0, 0, 0, 1, 1, 1, 1]), np.array([0, 0, 3, 3, 3, 1, 1])) == (4, 2, 2)
    with pytest.raises(ValueError, match="more groups"):
        group_split(coarse, coarse)


def test_digits_in_the_digits_preset_space_get_a_k_near_the_classes(digits):
    """The digits preset's head space (the 10-d UMAP of the HOG's whitened PCA-32): measured K = 12
    with UMAP seeds 0 and 1 (separation 0.81; 10 classes)."""
    from scan_core.method.hog import HOGPCA
    from scan_core.method.pretext import embed
    features = embed(HOGPCA.fit(digits.images, 32, 0, "cpu"), digits.images, "cpu")
    suggestion = suggest_num_clusters(features, fit_manifold(features, 10, 0))
    assert 8 <= suggestion.k <= 13


def test_bad_arguments_are_refused_with_a_reason():
    points, _ = blobs([10, 10])
    with pytest.raises(ValueError, match="embedding must be"):
        suggest_num_clusters(points, points[:5])
    with pytest.raises(ValueError, match="max_k must be at least 2"):
        suggest_num_clusters(points, points, max_k=1)
    with pytest.raises(ValueError, match="too few to suggest"):
        suggest_num_clusters(points[:7], points[:7])


def test_the_reason_says_in_plain_words_why_the_next_best_and_the_split():
    suggestion = KSuggestion(3, np.array([2, 3, 4, 5]), np.array([0.30, 0.52, 0.51, 0.40]), (1200, 700, 480))
    reason = suggestion.reason()
    assert reason == ("K = 3: at 3 groups the images form the most clearly separated groups on a map of their features "
                      "(separation 0.52 on a scale where 0 is none and 1 is perfect); next best K = 4 (0.51). "
                      "A 4th group would split a group of 1,200 images in two (700 and 480 of them)")
    assert not re.search(r"ARI|eigengap|silhouette|stabilit", reason, flags=re.I)
    assert [ordinal(n) for n in (2, 3, 11, 12, 13, 21, 22, 101, 111)] == [
        "2nd", "3rd", "11th", "12th", "13th", "21st", "22nd", "101st", "111th"]


#: A suggestion as an earlier version wrote it: the stability of k-means on halves and eigengaps.
EARLIER = {"k": 3, "ks": [2, 3, 4], "stability": [0.9, 0.89, 0.6], "eigengaps": [0.01, 0.03, 0.002],
           "eigenvalues": [0.0, 0.0, 0.01, 0.04, 0.05]}


def test_an_earlier_version_s_suggestion_loads_with_its_k_and_says_so():
    suggestion = KSuggestion.from_dict(EARLIER)
    assert suggestion.k == 3 and suggestion.earlier and suggestion.runner_up is None
    assert suggestion.reason().startswith("K = 3: suggested by an earlier version")
    assert KSuggestion.from_dict(suggestion.to_dict()).to_dict() == {"k": 3, "ks": [2, 3, 4]}
    with pytest.raises(ValueError, match="one value per K"):
        KSuggestion.from_dict({"k": 3, "ks": [2, 3, 4], "separation": [0.1, 0.2], "split": None})


@pytest.fixture(scope="module")
def auto_run(tmp_path_factory, digits):
    """A tiny run with --clusters auto on a folder without labels: 3 digit classes as PNGs."""
    root = tmp_path_factory.mktemp("auto")
    folder = root / "folder"
    folder.mkdir()
    for i in np.flatnonzero(np.isin(digits.labels, [0, 1, 6]))[:300]:
        Image.fromarray(digits.images[i, ..., 0]).save(folder / f"{i:04d}.png")
    run_dir = root / "run"
    assert main(["train", "--dataset", str(folder), "--clusters", "auto", "--out", str(run_dir), "--preset", "tiny",
                 "--quiet", "--no-umap"]) == 0
    return run_dir


def test_a_run_with_auto_k_trains_with_the_k_it_suggested(auto_run):
    evidence = json.loads((auto_run / "suggested_k.json").read_text())
    config = json.loads((auto_run / "config.json").read_text())
    k = evidence["k"]
    assert config["num_clusters"] == k and config["suggest_clusters"] and 2 <= k <= 4  # three digit classes
    assert np.load(auto_run / "scan_probs.npy").shape == (300, k)
    assert k == evidence["ks"][int(np.argmax(evidence["separation"]))]  # the rule, read back from the evidence
    status = json.loads((auto_run / "status.json").read_text())
    assert "suggest" in status["completed"] and status["state"] == "finished"


def test_resuming_an_auto_run_keeps_its_k(auto_run):
    before = (auto_run / "scan_probs.npy").stat().st_mtime_ns
    train_run(auto_run, show_bar=False)
    assert (auto_run / "scan_probs.npy").stat().st_mtime_ns == before  # nothing redone, K read back


def test_the_cli_prints_the_evidence_of_any_run(auto_run, capsys):
    k = json.loads((auto_run / "suggested_k.json").read_text())["k"]
    assert main(["suggest", str(auto_run)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"suggested K = {k}:") and f"\n{k:<4} " in out and "<- suggested" in out
    assert out.count("  next best") == 1 and "separation (0 none, 1 perfect)" in out
    assert main(["evaluate", str(auto_run)]) == 0
    assert f"suggested K = {k}" in capsys.readouterr().out


def test_the_cli_refuses_a_k_that_is_neither_a_number_nor_auto(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--dataset", "digits", "--clusters", "many", "--out", str(tmp_path / "run")])
    assert exit_.value.code == 2 and "expected a whole number or 'auto', got 'many'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_run_without_a_stored_suggestion_gets_the_same_one_computed(auto_run, tmp_path):
    from scan_core.explore.suggest import run_suggestion
    copy = tmp_path / "copy"
    shutil.copytree(auto_run, copy)
    stored = json.loads((copy / "suggested_k.json").read_text())
    (copy / "suggested_k.json").unlink()
    assert run_suggestion(copy).to_dict() == stored  # from its features and neighbours, as the stage did
    (copy / "features.npy").unlink()
    with pytest.raises(FileNotFoundError, match="no features yet"):
        run_suggestion(copy)


def test_a_run_with_an_earlier_version_s_suggestion_keeps_its_k_and_can_suggest_again(auto_run, tmp_path, capsys):
    from scan_core.explore.suggest import run_suggestion
    copy = tmp_path / "copy"
    shutil.copytree(auto_run, copy)
    now = json.loads((copy / "suggested_k.json").read_text())
    (copy / "suggested_k.json").write_text(json.dumps(EARLIER))
    assert run_suggestion(copy).k == 3 and run_suggestion(copy).earlier
    assert run_suggestion(copy, again=True).to_dict() == now
    assert main(["suggest", str(copy)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"the run's K = 3 was suggested by an earlier version; suggested now:\nsuggested K = {now['k']}:")


def test_the_clusters_page_shows_an_earlier_version_s_k_and_suggests_again(own_home, monkeypatch):
    from test_app import decoded

    from apptest import app, button, plotly_specs
    (own_home / "runs" / "digits" / "suggested_k.json").write_text(json.dumps({**EARLIER, "k": 10}))
    at = app(own_home, monkeypatch, page="clusters")
    assert any(e.label == "Why K = 10?" for e in at.expander)
    assert any(c.value.startswith("Suggested K = 10: suggested by an earlier version") for c in at.caption)
    assert not [t for spec in plotly_specs(at) for t in spec["data"] if t.get("name") == SEPARATION]
    button(at, "Suggest again").click().run()
    assert not at.exception, [e.value for e in at.exception]
    bars = [t for spec in plotly_specs(at) for t in spec["data"] if t.get("name") == SEPARATION]
    caption = next(c.value for c in at.caption if c.value.startswith("Suggested K = ") and "next best K" in c.value)
    k = int(re.match(r"Suggested K = (\d+):", caption).group(1))
    assert len(bars) == 1 and 8 <= k <= 13 and decoded(bars[0]["x"])[np.argmax(decoded(bars[0]["y"]))] == k
