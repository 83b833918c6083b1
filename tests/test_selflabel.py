"""Self-labeling: the loss against hand-worked cross-entropies (threshold boundary, class balancing),
and which view gives the targets, both in ``train_selflabel`` and in the selflabel stage of a real run."""
import inspect
import math

import numpy as np
import pytest
import torch

from scan_core.config import SelfLabelConfig
from scan_core.method import selflabel


def log_softmax(row, k):
    """``log softmax(row)[k]`` written out."""
    return row[k] - math.log(sum(math.exp(v) for v in row))


def test_threshold_is_strict_only_samples_above_it_count():
    weak = torch.tensor([[math.log(3), 0.0],    # p_max = 3/4: exactly the threshold -> not a pseudo-label
                         [math.log(9), 0.0],    # p_max = 9/10 > 3/4, class 0 -> the only pseudo-label
                         [0.0, math.log(2)]],   # p_max = 2/3 < 3/4
                        dtype=torch.float64)
    assert torch.softmax(weak, 1)[0, 0].item() == 0.75  # precondition: the boundary sample sits exactly on it
    strong_rows = [[0.3, -0.2], [1.0, 2.0], [0.5, 0.1]]
    strong = torch.tensor(strong_rows, dtype=torch.float64)
    expected = -log_softmax(strong_rows[1], 0)      # sample 1 alone, target class 0: -(1 - log(e + e^2))
    # had the boundary sample counted too (class 0 as well) the loss would be the mean of both
    assert expected != pytest.approx((expected - log_softmax(strong_rows[0], 0)) / 2)
    loss = selflabel.selflabel_loss(weak, strong, threshold=0.75, balance=False)
    assert loss is not None
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_threshold_is_strict_with_class_balancing():
    """The default (balanced) path, in float32: a tie of two logits gives p_max = 1/2 exactly."""
    inf = math.inf
    weak = torch.tensor([[2.0, 2.0, -inf, -inf],   # p_max = 1/2: exactly the threshold -> not a pseudo-label
                         [0.0, 3.0, 0.0, 0.0],     # p_max = e^3 / (e^3 + 3) ~ 0.87 > 1/2, class 1 -> the only one
                         [0.0, 0.0, 0.0, 0.0]])    # p_max = 1/4 < 1/2
    assert torch.softmax(weak, 1)[0, 0].item() == 0.5  # precondition: the boundary sample sits exactly on it
    strong_rows = [[0.3, -0.2, 0.0, 0.1], [1.0, 2.0, -1.0, 0.5], [0.5, 0.1, 0.2, 0.0]]
    strong = torch.tensor(strong_rows)
    expected = -log_softmax(strong_rows[1], 1)
    loss = selflabel.selflabel_loss(weak, strong, threshold=0.5)
    assert loss is not None
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # the boundary sample (class 0 or 1: a tie) would have changed the loss had it counted
    assert expected != pytest.approx((expected - log_softmax(strong_rows[0], 0)) / 2, rel=1e-3)
    assert expected != pytest.approx((expected - log_softmax(strong_rows[0], 1)) / 2, rel=1e-3)


def test_balanced_loss_accepts_float64_logits():
    weak = torch.tensor([[math.log(9), 0.0], [0.0, math.log(2)]], dtype=torch.float64)  # p_max 0.9 and 2/3
    strong_rows = [[1.0, 2.0], [0.5, 0.1]]
    loss = selflabel.selflabel_loss(weak, torch.tensor(strong_rows, dtype=torch.float64), threshold=0.75)
    assert loss.item() == pytest.approx(-log_softmax(strong_rows[0], 0), rel=1e-12)


def test_no_confident_sample_gives_none():
    weak = torch.tensor([[math.log(3), 0.0], [0.0, 0.0], [0.0, math.log(2)]], dtype=torch.float64)  # 0.75, 0.5, 2/3
    strong = torch.zeros(3, 2, dtype=torch.float64)
    assert selflabel.selflabel_loss(weak, strong, threshold=0.75, balance=False) is None
    assert selflabel.selflabel_loss(weak, strong, threshold=0.75) is None


def test_class_balancing_hand_worked():
    weak = torch.tensor([[6.0, 0.0, 0.0],      # confident, class 0
                         [0.0, 7.0, 0.0],      # confident, class 1
                         [5.0, 0.0, 0.0],      # confident, class 0
                         [0.0, 1.0, 0.0]])     # p_max ~ 0.58: not confident; counted, it would make class 1 weigh as class 0
    strong_rows = [[0.2, 1.0, -0.5], [1.5, 0.3, 0.0], [-1.0, 0.4, 2.0], [0.0, 3.0, 0.0]]
    strong = torch.tensor(strong_rows)
    losses = [-log_softmax(strong_rows[0], 0), -log_softmax(strong_rows[1], 1), -log_softmax(strong_rows[2], 0)]
    weights = [3 / 2, 3 / 1, 3 / 2]             # n_confident / count: class 0 twice, class 1 once
    balanced = sum(w * v for w, v in zip(weights, losses)) / sum(weights)   # weighted mean
    plain = sum(losses) / 3
    assert balanced != pytest.approx(plain, rel=1e-3)  # the example does tell the two apart
    assert selflabel.selflabel_loss(weak, strong, threshold=0.9).item() == pytest.approx(balanced, rel=1e-6)
    assert selflabel.selflabel_loss(weak, strong, threshold=0.9, balance=False).item() == pytest.approx(plain, rel=1e-6)


def _two_view_model():
    """A linear model (no bias) with margin ``logit0 - logit1`` = +8 on ``[1, 0]`` and -8 on ``[0, 1]``."""
    model = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[4.0, -4.0], [-4.0, 4.0]]))
    return model


def _margin(model, x):
    with torch.no_grad():
        logits = model(x)
    return (logits[:, 0] - logits[:, 1]).tolist()


@pytest.mark.parametrize("swapped", [False, True])
def test_train_selflabel_targets_come_from_the_weak_view(swapped):
    n = 8
    view_a = torch.tensor([[1.0, 0.0]]).repeat(n, 1)   # confidently class 0 (p ~ 0.9997)
    view_b = torch.tensor([[0.0, 1.0]]).repeat(n, 1)   # confidently class 1
    config = SelfLabelConfig(epochs=3, batch_size=4, lr=0.1, weight_decay=0.0, threshold=0.9)
    model = _two_view_model()
    weak, strong = (view_b, view_a) if swapped else (view_a, view_b)
    skipped = selflabel.train_selflabel(model, lambda index: weak[index], lambda index: strong[index], n, config, seed=0)
    assert skipped == 0
    margin_a, margin_b = _margin(model, view_a[:1])[0], _margin(model, view_b[:1])[0]
    if not swapped:
        # targets: class 0 (from view a), fitted on view b: b moves towards class 0, a (never an input
        # with a gradient; its weights get none) stays where it was
        assert margin_b > -8.0 + 1.0
        assert margin_a == pytest.approx(8.0, abs=1e-6)
    else:
        # the opposite: targets class 1 from view b, fitted on view a
        assert margin_a < 8.0 - 1.0
        assert margin_b == pytest.approx(-8.0, abs=1e-6)


def record_selflabel_views(monkeypatch, index: np.ndarray) -> list:
    """Patch the selflabel stage to record its (weak, strong) inputs of ``index`` when it trains."""
    from scan_core.engine.stages import selflabel as stage

    real = stage.train_selflabel
    seen = []

    def recording(*args, **kwargs):
        bound = inspect.signature(real).bind(*args, **kwargs)
        with torch.no_grad():
            weak = bound.arguments["weak_inputs"](index).detach().cpu().numpy().copy()
            strong = bound.arguments["strong_inputs"](index).detach().cpu().numpy().copy()
        seen.append((weak, strong))
        return real(*args, **kwargs)

    monkeypatch.setattr(stage, "train_selflabel", recording)
    return seen


def test_selflabel_stage_gives_clean_inputs_as_weak_and_augmented_as_strong(tmp_path, monkeypatch):
    from scan_core.engine.run import train_run
    index = np.arange(0, 1797, 97)  # digits: 1797 images
    seen = record_selflabel_views(monkeypatch, index)
    run_dir = tmp_path / "run"
    train_run(run_dir, "digits", preset="tiny", show_bar=False)
    assert len(seen) == 1, "the selflabel stage did not call train_selflabel exactly once"
    weak, strong = seen[0]

    # what frozen heads see: the pretext features, or their UMAP manifold when the run has one
    # (the tiny preset has none)
    clean_path = run_dir / "manifold.npy" if (run_dir / "manifold.npy").exists() else run_dir / "features.npy"
    features = np.load(clean_path)
    banks = np.load(run_dir / "feature_banks.npy")
    assert len(features) == 1797 and banks.shape == (1, *features.shape)  # tiny preset: one feature view
    np.testing.assert_array_equal(weak, features[index])        # weak view = the clean features
    np.testing.assert_array_equal(strong, banks[0][index])      # strong view = the augmented bank
    assert not np.allclose(strong, weak)                         # and the two views do differ


def test_without_feature_banks_the_strong_view_is_the_feature_with_noise(tmp_path, monkeypatch):
    """A run without feature banks used the clean feature as its strong view (nothing augmented
    reached self-labeling); now it is the feature plus Gaussian noise of ``feature_noise`` of each
    dimension's standard deviation."""
    from scan_core.engine.run import train_run
    index = np.arange(1797)
    seen = record_selflabel_views(monkeypatch, index)
    run_dir = tmp_path / "run"
    train_run(run_dir, "digits", preset="tiny", show_bar=False, feature_views=0, selflabel={"feature_noise": 0.2})
    weak, strong = seen[0]
    features = np.load(run_dir / "features.npy")
    assert not (run_dir / "feature_banks.npy").exists()
    np.testing.assert_array_equal(weak, features)
    ratio = (strong - weak).std(0) / features.std(0)   # 1797 draws a dimension: within ~5% of 0.2
    assert np.all(np.abs(ratio - 0.2) < 0.03), ratio
    assert np.all(np.abs((strong - weak).mean(0)) < 0.03 * features.std(0))


def test_self_labeling_is_kept_only_when_agreement_holds_and_no_cluster_is_merged_away():
    from scan_core.engine.stages.selflabel import keep_selflabel
    from scan_core.method.clustering import size_entropy
    ten = np.repeat(np.arange(10), 10)                       # ten equal clusters: entropy ln 10
    assert size_entropy(ten) == pytest.approx(math.log(10))
    six = np.where(ten < 6, ten, 0)                          # four merged into cluster 0: sizes 50, 10 x 5
    assert size_entropy(six) == pytest.approx(-(0.5 * math.log(0.5) + 5 * 0.1 * math.log(0.1)))
    assert keep_selflabel(ten, ten, 0.90, 0.95, 10)[0] == "selflabel"
    assert keep_selflabel(ten, ten, 0.95, 0.90, 10)[0] == "scan"          # agreement fell
    stage, why = keep_selflabel(ten, six, 0.95, 0.99, 10)                  # more agreement, but merged
    assert stage == "scan" and "merged away" in why
    one_moved = ten.copy()
    one_moved[0] = 1                                         # sizes 9, 11, 10 x 8: entropy falls by 0.002
    assert keep_selflabel(ten, one_moved, 0.95, 0.95, 10)[0] == "selflabel"  # within 1% of ln 10 = 0.023
