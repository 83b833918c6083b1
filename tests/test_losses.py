"""Loss functions of the three SCAN stages against hand computations."""
import math

import numpy as np
import pytest
import torch

from scan_core.method.clustering import scan_loss
from scan_core.method.pretext import nt_xent_loss
from scan_core.method.selflabel import selflabel_loss


def softmax(a):
    e = np.exp(a - a.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


# ---- SCAN loss --------------------------------------------------------------------------------

def test_scan_loss_matches_numpy():
    a = np.array([[2.0, -1.0], [0.5, 0.3], [-1.0, 1.5]])
    n = np.array([[1.0, 0.0], [-0.2, 0.8], [0.0, 2.0]])
    pa, pn = softmax(a), softmax(n)
    consistency = -np.mean(np.log((pa * pn).sum(1)))
    m = np.maximum(pa.mean(0), 1e-8)
    entropy = -(m * np.log(m)).sum()

    total, c, h = scan_loss(torch.tensor(a), torch.tensor(n), entropy_weight=2.5)
    assert c.item() == pytest.approx(consistency, rel=1e-9)
    assert h.item() == pytest.approx(entropy, rel=1e-9)
    assert total.item() == pytest.approx(consistency - 2.5 * entropy, rel=1e-9)


def test_scan_loss_identical_confident_predictions_have_zero_consistency():
    logits = 30 * torch.eye(4)
    _, consistency, entropy = scan_loss(logits, logits.clone())
    assert consistency.item() == pytest.approx(0.0, abs=1e-6)
    assert entropy.item() == pytest.approx(np.log(4), rel=1e-5)  # one image per cluster


def test_scan_loss_uniform_predictions_have_entropy_log_k():
    k = 7
    total, consistency, entropy = scan_loss(torch.zeros(5, k), torch.zeros(5, k), entropy_weight=5.0)
    assert entropy.item() == pytest.approx(np.log(k), rel=1e-6)
    assert consistency.item() == pytest.approx(np.log(k), rel=1e-6)  # <p, p> = 1/K
    assert total.item() == pytest.approx(np.log(k) - 5 * np.log(k), rel=1e-6)


def test_scan_loss_stays_finite_when_a_cluster_is_empty():
    logits = torch.tensor([[0.0, -200.0], [0.0, -200.0]])  # p(cluster 1) underflows to 0 in float32
    total, consistency, entropy = scan_loss(logits, logits)
    assert torch.isfinite(total) and entropy.item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("shapes", [((3, 2), (3, 3)), ((3, 2), (2, 2)), ((6,), (6,))])
def test_scan_loss_shape_mismatch_raises(shapes):
    with pytest.raises(ValueError):
        scan_loss(torch.zeros(shapes[0]), torch.zeros(shapes[1]))


# ---- NT-Xent ----------------------------------------------------------------------------------

def nt_xent_numpy(za, zb, tau):
    z = np.concatenate([za, zb])
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    n, b = len(z), len(za)
    losses = []
    for i in range(n):
        sims = {j: z[i] @ z[j] / tau for j in range(n) if j != i}
        log_denominator = np.log(sum(np.exp(s) for s in sims.values()))
        losses.append(log_denominator - sims[(i + b) % n])
    return np.mean(losses)


@pytest.mark.parametrize("tau", [0.1, 0.5, 2.0])
def test_nt_xent_matches_numpy_double_loop(tau):
    rng = np.random.default_rng(0)
    za, zb = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    got = nt_xent_loss(torch.tensor(za), torch.tensor(zb), temperature=tau).item()
    assert got == pytest.approx(nt_xent_numpy(za, zb, tau), rel=1e-9)


def test_nt_xent_aligned_pairs_beat_shuffled_pairs():
    z = torch.eye(4, dtype=torch.float64) * 3.0  # orthogonal images; the scale must not matter
    aligned = nt_xent_loss(z, z.clone(), 0.1).item()
    shuffled = nt_xent_loss(z, z[[1, 2, 3, 0]], 0.1).item()
    assert aligned < shuffled
    # positive at cos 1, the 2B - 2 others at cos 0
    assert aligned == pytest.approx(-np.log(np.exp(10) / (np.exp(10) + 6)), rel=1e-5)


@pytest.mark.parametrize("tau", [0.0, -0.5])
def test_nt_xent_rejects_bad_temperature(tau):
    with pytest.raises(ValueError):
        nt_xent_loss(torch.randn(4, 3), torch.randn(4, 3), tau)


def test_nt_xent_rejects_shape_mismatch():
    with pytest.raises(ValueError):
        nt_xent_loss(torch.randn(4, 3), torch.randn(5, 3))


# ---- self-labeling ----------------------------------------------------------------------------

def test_selflabel_returns_none_without_confident_rows():
    assert selflabel_loss(torch.zeros(6, 3), torch.randn(6, 3), threshold=0.99) is None


def test_selflabel_single_confident_row():
    weak = torch.tensor([[12.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.5]])
    strong = torch.tensor([[0.2, 1.0, -0.3], [3.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    loss = selflabel_loss(weak, strong, threshold=0.99)
    assert loss is not None and torch.isfinite(loss)
    expected = -np.log(softmax(strong.numpy())[0, 0])
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_selflabel_class_balanced_weights_match_hand_computation():
    weak = torch.tensor([[10.0, 0, 0], [10.0, 0, 0], [10.0, 0, 0], [0, 10.0, 0], [0.0, 0, 0]])
    strong = torch.tensor([[1.0, 0.5, -1], [0.2, 0.1, 0.0], [-1.0, 2.0, 0.3],
                           [0.4, 0.9, 0.1], [5.0, -5.0, 0.0]])
    targets = np.array([0, 0, 0, 1])  # row 4 is not confident
    nll = -np.log(softmax(strong.numpy()[:4])[np.arange(4), targets])
    class_weight = {0: 4 / 3, 1: 4 / 1}  # n_masked / count_c
    w = np.array([class_weight[t] for t in targets])
    balanced = (w * nll).sum() / w.sum()

    got = selflabel_loss(weak, strong, threshold=0.99, balance=True).item()
    assert got == pytest.approx(balanced, rel=1e-5)
    plain = selflabel_loss(weak, strong, threshold=0.99, balance=False).item()
    assert plain == pytest.approx(nll.mean(), rel=1e-5)
    assert abs(got - plain) > 1e-3


def test_selflabel_gradient_flows_only_into_strong_logits():
    weak = torch.tensor([[10.0, 0, 0], [0, 10.0, 0], [0.0, 0, 0]], requires_grad=True)
    strong = torch.randn(3, 3, requires_grad=True)
    selflabel_loss(weak, strong, threshold=0.99).backward()
    assert weak.grad is None
    assert strong.grad[:2].abs().sum() > 0
    assert torch.equal(strong.grad[2], torch.zeros(3))  # unconfident row contributes nothing


@pytest.mark.parametrize("threshold", [0.0, 1.0, 1.5])
def test_selflabel_rejects_bad_threshold(threshold):
    with pytest.raises(ValueError):
        selflabel_loss(torch.zeros(2, 3), torch.zeros(2, 3), threshold=threshold)


def test_the_simclr_schedule_warms_up_linearly_then_decays_by_a_cosine():
    from scan_core.method.pretext import lr_at
    # 10 steps of warm-up then 90 of decay, base 0.4, worked by hand
    assert [lr_at(s, 100, 0.4, 10) for s in (0, 4, 9)] == pytest.approx([0.04, 0.2, 0.4])
    assert lr_at(10, 100, 0.4, 10) == pytest.approx(0.4)                     # cos(0): the peak
    assert lr_at(55, 100, 0.4, 10) == pytest.approx(0.2)                     # half-way: cos(pi/2)
    assert lr_at(100, 100, 0.4, 10) == pytest.approx(0.0, abs=1e-12)         # the end: cos(pi)
    assert lr_at(25, 100, 0.4, 10) == pytest.approx(0.2 * (1 + math.cos(math.pi * 15 / 90)))
    assert lr_at(0, 5, 0.1, 0) == pytest.approx(0.1)                         # no warm-up
