"""Loss functions of the three SCAN stages against hand computations."""
import math

import numpy as np
import pytest
import torch

from scan_core.config import ScanConfig
from scan_core.method.clustering import (
    ClusterHeads,
    TemiTeacher,
    ema_prior,
    ema_update,
    kmeans_prior,
    scan_loss,
    size_term,
    temi_loss,
)
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


# ---- the size term with a target prior ---------------------------------------------------------

def test_size_term_is_minus_the_divergence_of_the_sorted_sizes_from_the_sorted_target():
    sizes = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    # same shares in another order of the clusters: no divergence
    assert size_term(sizes, torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)).item() == pytest.approx(0.0, abs=1e-12)
    # sorted 0.2 | 0.1, 0.3 | 0.3, 0.5 | 0.6: KL = 0.2 ln 2 + 0.5 ln(5/6) = 0.138629 - 0.091161
    assert size_term(sizes, torch.tensor([0.6, 0.1, 0.3], dtype=torch.float64)).item() == pytest.approx(-0.047469, abs=1e-6)
    assert size_term(sizes).item() == pytest.approx(-(0.5 * np.log(0.5) + 0.3 * np.log(0.3) + 0.2 * np.log(0.2)))


def test_scan_loss_with_an_equal_prior_has_the_entropy_versions_gradient_and_an_unequal_one_pulls_elsewhere():
    a = np.array([[2.0, -1.0, 0.0], [0.5, 0.3, 0.1], [-1.0, 1.5, 0.2], [0.0, 0.0, 3.0]])
    n = np.array([[1.0, 0.0, 0.0], [-0.2, 0.8, 0.0], [0.0, 2.0, 0.1], [0.3, 0.0, 1.0]])
    grads = []
    for prior in (None, torch.full((3,), 1 / 3, dtype=torch.float64), torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64)):
        logits = torch.tensor(a, requires_grad=True)
        total, consistency, term = scan_loss(logits, torch.tensor(n), 5.0, prior)
        total.backward()
        grads.append(logits.grad)
        if prior is not None and prior[0] != prior[1]:
            m = np.sort(softmax(a).mean(0))
            assert term.item() == pytest.approx(-(m * np.log(m / np.array([0.1, 0.2, 0.7]))).sum(), rel=1e-9)
    equal = scan_loss(torch.tensor(a), torch.tensor(n), 5.0, torch.full((3,), 1 / 3, dtype=torch.float64))[2].item()
    assert equal == pytest.approx(scan_loss(torch.tensor(a), torch.tensor(n), 5.0)[2].item() - np.log(3), rel=1e-9)
    assert torch.allclose(grads[0], grads[1], atol=1e-12)
    assert not torch.allclose(grads[0], grads[2], atol=1e-3)


def test_the_kmeans_prior_is_the_sorted_smoothed_share_of_each_kmeans_cluster():
    rng = np.random.default_rng(0)
    blobs = np.concatenate([rng.normal([5, 0], 0.1, (30, 2)), rng.normal([0, 5], 0.1, (10, 2))])
    assert kmeans_prior(blobs, 2) == pytest.approx([11 / 42, 31 / 42])


# ---- TEMI -------------------------------------------------------------------------------------

def probs_logits(p):
    """Logits ``(1, 1, K)`` whose softmax is ``p``."""
    return torch.log(torch.tensor([[p]], dtype=torch.float64))


def test_temi_loss_of_one_pair_worked_by_hand():
    # s = t = (0.75, 0.25) on both sides, prior (0.5, 0.5): weight <t, t'> = 0.625;
    # beta 1: pmi = ln((0.5625 + 0.0625) / 0.5) = ln 1.25; beta 0.5: pmi = ln((0.75 + 0.25) / 0.5) = ln 2
    p = probs_logits([0.75, 0.25])
    prior = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    assert temi_loss((p, p), (p, p), prior, beta=1.0).item() == pytest.approx(-0.625 * np.log(1.25), rel=1e-9)
    assert temi_loss((p, p), (p, p), prior, beta=0.5).item() == pytest.approx(-0.625 * np.log(2), rel=1e-9)


def test_temi_loss_matches_a_pair_by_pair_numpy_loop():
    rng = np.random.default_rng(1)
    heads, batch, k, beta = 2, 3, 4, 0.6
    s_a, s_n, t_a, t_n = (rng.normal(size=(heads, batch, k)) for _ in range(4))
    priors = rng.dirichlet(np.ones(k), heads)
    got = temi_loss((torch.tensor(s_a), torch.tensor(s_n)), (torch.tensor(t_a), torch.tensor(t_n)),
                    torch.tensor(priors), beta).numpy()
    sa, sn, ta, tn = (np.stack([softmax(h) for h in x]) for x in (s_a, s_n, t_a, t_n))
    for h in range(heads):
        terms = []
        for i in range(batch):
            weight = np.mean([ta[g, i] @ tn[g, i] for g in range(heads)])  # the teachers' agreement, all heads
            pmi = lambda s, t: np.log(sum((s[c] * t[c]) ** beta / priors[h, c] for c in range(k)))
            terms.append(-weight * (pmi(sa[h, i], tn[h, i]) + pmi(sn[h, i], ta[h, i])) / 2)
        assert got[h] == pytest.approx(np.mean(terms), rel=1e-9)


def test_temi_gradient_pulls_the_student_to_the_teachers_cluster_and_to_the_rarer_cluster():
    student = torch.zeros(1, 1, 2, dtype=torch.float64, requires_grad=True)
    teacher = probs_logits([0.9, 0.1]).requires_grad_(True)
    temi_loss((student, student), (teacher, teacher), torch.tensor([[0.5, 0.5]], dtype=torch.float64)).backward()
    assert student.grad[0, 0, 0] < 0 < student.grad[0, 0, 1]  # descent raises cluster 0, the teacher's
    assert teacher.grad is None                                # the teacher and the weight take no gradient
    student.grad = None
    uniform = probs_logits([0.5, 0.5])
    temi_loss((student, student), (uniform, uniform), torch.tensor([[0.8, 0.2]], dtype=torch.float64)).backward()
    assert student.grad[0, 0, 1] < 0 < student.grad[0, 0, 0]  # the prior's smaller cluster gains


def test_temi_loss_refuses_bad_shapes_and_beta():
    x = torch.zeros(2, 3, 4)
    with pytest.raises(ValueError, match="beta"):
        temi_loss((x, x), (x, x), torch.full((2, 4), 0.25), beta=0.0)
    with pytest.raises(ValueError, match="priors"):
        temi_loss((x, x), (x, x), torch.full((3, 4), 0.25))
    with pytest.raises(ValueError, match="H, B, K"):
        temi_loss((x, torch.zeros(2, 2, 4)), (x, x), torch.full((2, 4), 0.25))


def test_the_prior_and_the_teacher_follow_by_ema_worked_by_hand():
    # teacher probabilities (0.9, 0.1) and (0.7, 0.3): mean (0.8, 0.2); 0.9 * 0.5 + 0.1 * 0.8 = 0.53
    priors = ema_prior(torch.tensor([[0.5, 0.5]]), torch.tensor([[[0.9, 0.1], [0.7, 0.3]]]), 0.9)
    assert priors.numpy() == pytest.approx(np.array([[0.53, 0.47]]))
    teacher, student = torch.nn.BatchNorm1d(1), torch.nn.BatchNorm1d(1)
    with torch.no_grad():
        teacher.weight.fill_(1.0)
        student.weight.fill_(3.0)
        student.running_mean.fill_(7.0)
    ema_update(teacher, student, 0.9)
    assert teacher.weight.item() == pytest.approx(0.9 * 1 + 0.1 * 3)
    assert teacher.running_mean.item() == 0.0  # buffers stay the teacher's


def test_the_temi_teacher_starts_as_the_student_and_its_priors_follow_its_probabilities():
    torch.manual_seed(0)
    heads = ClusterHeads(3, 2, num_heads=2)
    teacher = TemiTeacher(heads, ScanConfig(loss="temi", prior_momentum=0.5))
    batch = torch.randn(4, 3)  # 2 anchors then their 2 partners
    student = heads(batch)
    assert torch.equal(teacher.model(batch), student)
    loss = teacher.loss(batch, student)
    probs = torch.softmax(student.detach(), 2).mean(1)  # (2 heads, 2 clusters)
    assert torch.allclose(teacher.priors, 0.5 * 0.5 + 0.5 * probs)
    expected = temi_loss((student[:, :2], student[:, 2:]), (student[:, :2], student[:, 2:]), teacher.priors)
    assert torch.allclose(loss, expected)
    with torch.no_grad():
        heads.heads[0].weight.add_(1.0)
    teacher.follow(heads)
    assert torch.allclose(teacher.model.heads[0].weight, heads.heads[0].weight - 0.9)


@pytest.mark.parametrize("settings, message", [({"loss": "dec"}, "loss must be one of scan, temi"),
                                               ({"loss": "temi", "size_prior": "kmeans"}, "applies to the scan loss"),
                                               ({"size_prior": "zipf"}, "size_prior must be one of"),
                                               ({"beta": 1.5}, "beta"), ({"teacher_momentum": 1.0}, "momentum")])
def test_the_objective_settings_are_checked(settings, message):
    with pytest.raises(ValueError, match=message):
        ScanConfig(**settings)


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
