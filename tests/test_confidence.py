"""The calibrated confidence and the chance warning (scan_core.method.confidence), against values
worked out here: a brute-force search for the temperature, softmax written out, hand thresholds."""
from __future__ import annotations

import numpy as np
import pytest

from scan_core.method.confidence import (
    LOW_FEATURE_LIFT,
    LOW_HEAD_AGREEMENT,
    chance_warning,
    feature_lift,
    neighbour_temperature,
    tempered,
)
from scan_core.method.neighbors import mine_neighbors


def soft_groups(seed: int = 0, softness: float = 0.15):
    """Four groups of 150 points and probabilities that pick each point's group, but softly (top
    probability about 0.3 to 0.4, as heads on frozen features give), with 10% of the points misplaced."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(4), 150)
    points = np.eye(4)[labels] * 3 + rng.standard_normal((600, 4))
    logits = np.eye(4)[labels] * 4 + rng.standard_normal((600, 4))
    wrong = rng.random(600) < 0.1
    logits[wrong] = np.roll(logits[wrong], 1, axis=1)
    probs = np.exp(softness * logits)
    return probs / probs.sum(1, keepdims=True), mine_neighbors(points.astype(np.float32), 10)


def neighbour_loss(probs, neighbors, temperature: float) -> float:
    """The mean cross-entropy of each image's tempered probabilities against its neighbours' clusters,
    one pair at a time."""
    clusters = probs.argmax(1)
    total, count = 0.0, 0
    for i, row in enumerate(neighbors):
        q = probs[i] ** (1 / temperature)
        q = q / q.sum()
        for j in row:
            total -= np.log(q[clusters[j]])
            count += 1
    return total / count


def test_tempered_is_the_power_of_the_probabilities_renormalised():
    probs = np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    for temperature in (0.5, 1.0, 3.0):
        powered = probs ** (1 / temperature)
        assert np.allclose(tempered(probs, temperature), powered / powered.sum(1, keepdims=True), atol=1e-6)
    assert (tempered(probs, 0.2).argmax(1) == probs.argmax(1)).all()
    with pytest.raises(ValueError, match="temperature must be positive"):
        tempered(probs, 0.0)


def test_the_temperature_is_the_brute_force_best_at_predicting_the_neighbours():
    probs, neighbors = soft_groups()
    fitted = neighbour_temperature(probs, neighbors)
    grid = np.exp(np.linspace(np.log(0.05), np.log(20), 161))
    losses = [neighbour_loss(probs, neighbors, t) for t in grid]
    best = grid[int(np.argmin(losses))]
    assert fitted == pytest.approx(best, rel=0.05)
    assert neighbour_loss(probs, neighbors, fitted) <= min(losses) + 1e-4
    calibrated = tempered(probs, fitted).max(1).mean()
    clusters = probs.argmax(1)
    agreement = (clusters[neighbors] == clusters[:, None]).mean()
    assert probs.max(1).mean() < 0.45 and fitted < 0.5          # soft probabilities are sharpened
    assert calibrated == pytest.approx(agreement, abs=0.06)      # and then read as neighbour agreement


def test_probabilities_that_need_no_calibration_keep_temperature_one():
    probs = np.tile([0.97, 0.01, 0.01, 0.01], (8, 1))
    neighbors = np.array([[(i + 1) % 8, (i + 2) % 8] for i in range(8)])
    assert neighbour_temperature(probs, neighbors) == 1.0       # every neighbour in its image's cluster
    with pytest.raises(ValueError, match="as many rows"):
        neighbour_temperature(probs, neighbors[:5])


def test_the_feature_lift_is_the_agreement_beyond_chance():
    clusters = np.array([0, 0, 0, 1])  # sizes 3 and 1: chance agreement 0.75^2 + 0.25^2 = 0.625
    neighbors = np.array([[1], [2], [3], [0]])  # agree, agree, disagree, disagree: 0.5
    assert feature_lift(clusters, neighbors) == pytest.approx((0.5 - 0.625) / (1 - 0.625))
    assert feature_lift(np.array([0, 0, 1, 1]), np.array([[1], [0], [3], [2]])) == pytest.approx(1.0)


def test_the_chance_warning_follows_the_head_agreement_and_the_lift():
    assert chance_warning(None, 0.9, 10) is None
    assert chance_warning(LOW_HEAD_AGREEMENT, LOW_FEATURE_LIFT, 10) is None
    heads = chance_warning(0.08, 0.9, 5)
    assert heads.startswith("These clusters are barely better than chance") and "ARI 0.08" in heads
    assert "the same 5 groups" in heads and "neighbours in the features" not in heads
    lift = chance_warning(0.9, 0.29, 5)
    assert "share their cluster only 29% of the way from chance" in lift and "ARI" not in lift
    assert "ARI 0.10" in chance_warning(0.1, 0.2, 5) and "20%" in chance_warning(0.1, 0.2, 5)


def test_a_run_on_noise_is_warned_and_the_digits_run_is_not(home, tmp_path):
    """Structure-free images through ``auto`` (the HOG manifold, whose UMAP makes clumps of noise too):
    the warning fires; the real digits run gets none, and its confidence calibration is recorded."""
    import json

    from PIL import Image

    from scan_core.engine.run import train_run
    rng = np.random.default_rng(0)
    for i in range(400):
        folder = tmp_path / "noise" / f"c{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8)).resize((32, 32), Image.BICUBIC).save(
            folder / f"{i:03d}.png")
    final = train_run(tmp_path / "run", str(tmp_path / "noise"), show_bar=False)["final"]
    assert final["warning"].startswith("These clusters are barely better than chance"), final
    digits = json.loads((home / "runs" / "digits" / "metrics.json").read_text())["final"]
    assert "warning" not in digits and digits["feature_lift"] > 0.85
    # the recorded temperature is the minimum of the neighbour cross-entropy, checked on a grid by brute force
    run = home / "runs" / "digits"
    probs = np.load(run / f"{digits['stage']}_probs.npy").astype(np.float64)
    neighbors = np.load(run / "neighbors.npy")
    targets = probs.argmax(1)[neighbors]                                   # (N, k)

    def cross_entropy(t: float) -> float:
        logits = np.log(np.clip(probs, 1e-12, None)) / t
        log_norm = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
        return float((log_norm[:, None] - np.take_along_axis(logits, targets, 1)).mean())

    clusters = probs.argmax(1)
    if (targets == clusters[:, None]).all():  # every neighbour in its image's cluster: nothing to fit
        assert digits["temperature"] == 1.0
    else:
        grid = np.exp(np.linspace(np.log(0.05), np.log(20), 400))
        best = grid[np.argmin([cross_entropy(t) for t in grid])]
        assert digits["temperature"] == pytest.approx(best, rel=0.05)
