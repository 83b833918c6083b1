"""SCAN clustering stage (Van Gansbeke et al., ECCV 2020, section 2.2).

Several clustering heads are trained at once so that an image and one of its mined neighbours get
the same soft assignment, while the batch's mean assignment stays spread over all ``K`` clusters:

    loss = -mean_i log <p(x_i), p(n_i)>  -  lambda * H(mean_i p(x_i)),   lambda = 5.

SCAN keeps the head and epoch with the lowest loss on held-out neighbour pairs. That alone can keep a
degenerate head (measured: 0.910 against 0.953 on digits, 0.617 against 0.737 on Fashion-MNIST);
the mean agreement of each head's partition with the other heads' (adjusted Rand index,
:func:`head_agreement`) rules those out, and alone misses the best head more often. So every head is
a candidate at a few epochs of the second half of training (:func:`snapshot_epochs`); the kept one
has the lowest loss on held-out anchors among the candidates whose agreement with all the others is
within :data:`AGREEMENT_MARGIN` of the highest (:func:`choose_head`). The held-out anchors take no
part in training, not even as another image's neighbour. No label is used. Heads train either on
frozen features (fast mode, as SCAN does for ImageNet) or on top of a backbone fed augmented images.

Two choices change the objective (``ScanConfig.loss``, ``ScanConfig.size_prior``):

- ``loss="temi"``: TEMI's loss (Adaloglou et al., BMVC 2023, arXiv 2303.17896, :func:`temi_loss`),
  made for noisy neighbour pairs: the pointwise mutual information between a student head's
  distribution on an image and an EMA teacher head's on its neighbour, each pair weighted by the
  teachers' agreement, the cluster prior an EMA of the teachers' mean probabilities
  (:class:`TemiTeacher`). The heads are still scored and kept by the SCAN loss on held-out pairs.
- ``size_prior="kmeans"``: SCAN's entropy term, which pushes every cluster toward the same size,
  becomes the divergence of the sorted cluster sizes from a target distribution (:func:`size_term`),
  the sorted sizes of k-means clusters of the heads' input: folders whose classes are not equal.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ScanConfig
from ..data.artifacts import Checkpoint
from .batches import Batches
from .distributed import data_parallel, gather, is_main, local_rows, per_rank, seeded
from .precision import Amp

PROB_FLOOR = 1e-8
AGREEMENT_MARGIN = 0.05  # candidates this close to the highest mean ARI may be kept, by held-out loss
SIZE_ENTROPY_TOLERANCE = 0.01  # of ln K: a larger fall of the size entropy means clusters were merged away


def size_term(mean_p: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
    """What SCAN's loss rewards in the cluster sizes of a batch, ``mean_p`` ``(K,)``: their entropy
    ``H(mean_p)`` (highest for equal sizes); with a target ``prior`` ``(K,)`` (sums to 1), minus the
    divergence of the sorted sizes from the sorted target, ``-KL(sort(mean_p) || sort(prior))``
    (highest, 0, when the sizes are the target's in any order of the clusters). With an equal
    ``prior`` this is ``H(mean_p) - ln K``: the same gradient."""
    mean_p = mean_p.clamp_min(PROB_FLOOR)
    if prior is None:
        return -(mean_p * torch.log(mean_p)).sum()
    if prior.shape != mean_p.shape:
        raise ValueError(f"prior must be ({len(mean_p)},) like the cluster sizes, got {tuple(prior.shape)}")
    sizes, target = mean_p.sort().values, prior.to(mean_p).clamp_min(PROB_FLOOR).sort().values
    return -(sizes * torch.log(sizes / target)).sum()


def kmeans_prior(features: np.ndarray, num_clusters: int, seed: int = 0) -> np.ndarray:
    """Target cluster sizes ``(K,)``, ascending, for :func:`size_term`: the shares of the spherical
    k-means clusters of ``features`` ``(N, D)``, each count plus one (no target share is 0)."""
    from .cosine import spherical_kmeans
    counts = np.bincount(spherical_kmeans(features, num_clusters, seed), minlength=num_clusters)
    return np.sort((counts + 1) / (counts.sum() + num_clusters))


def scan_loss(anchor_logits: torch.Tensor, neighbor_logits: torch.Tensor, entropy_weight: float = 5.0,
              prior: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SCAN loss of one head.

    Args:
        anchor_logits, neighbor_logits: ``(B, K)`` logits of anchors and of one neighbour each.
        entropy_weight: lambda, weight of the entropy of the mean assignment.
        prior: ``(K,)`` target cluster sizes for the size term (:func:`size_term`); None: equal sizes.

    Returns:
        ``(total, consistency, entropy)`` scalars with ``total = consistency - lambda * entropy``;
        consistency = ``-mean log <p_a, p_n>``, entropy = ``H(mean_batch p_a)`` (natural log), or
        with a ``prior`` the size term ``-KL(sort(mean_batch p_a) || sort(prior))``.
    """
    if anchor_logits.shape != neighbor_logits.shape or anchor_logits.ndim != 2:
        raise ValueError(f"logits must both be (B, K), got {tuple(anchor_logits.shape)} "
                         f"and {tuple(neighbor_logits.shape)}")
    p_anchor = F.softmax(anchor_logits, dim=1)
    p_neighbor = F.softmax(neighbor_logits, dim=1)
    agreement = (p_anchor * p_neighbor).sum(1)
    consistency = -torch.log(agreement.clamp_min(PROB_FLOOR)).mean()
    entropy = size_term(p_anchor.mean(0), prior)
    return consistency - entropy_weight * entropy, consistency, entropy


def temi_loss(student: tuple[torch.Tensor, torch.Tensor], teacher: tuple[torch.Tensor, torch.Tensor],
              priors: torch.Tensor, beta: float = 0.6) -> torch.Tensor:
    """TEMI loss of every head (Adaloglou et al., BMVC 2023, eq. 6-8), ``(H,)``.

    For a pair (x, x') and head h, with student probabilities s, teacher probabilities t and the
    head's cluster prior q: ``pmi(s, t) = log sum_k (s_k t_k)^beta / q_k``; the pair's loss is
    ``-w (pmi(s(x), t(x')) + pmi(s(x'), t(x))) / 2``, where the weight ``w = mean_h <t_h(x), t_h(x')>``
    is the teachers' agreement on the pair (no gradient): pairs the teachers split count less.

    Args:
        student: ``(H, B, K)`` logits of the student heads on the anchors and on their neighbours.
        teacher: the same from the teacher heads (detached here).
        priors: ``(H, K)`` each head's cluster prior (:func:`ema_prior`).
        beta: the exponent, 0 < beta <= 1 (TEMI: 0.6; 1: plain PMI).
    """
    if not 0 < beta <= 1:
        raise ValueError(f"TEMI's beta must lie in (0, 1], got {beta}")
    shapes = {tuple(x.shape) for x in (*student, *teacher)}
    if len(shapes) != 1 or student[0].ndim != 3 or priors.shape != (student[0].shape[0], student[0].shape[2]):
        raise ValueError(f"student and teacher logits must all be (H, B, K) and priors (H, K), got "
                         f"{sorted(shapes)} and {tuple(priors.shape)}")
    s_a, s_n = (F.softmax(x, 2) for x in student)
    t_a, t_n = (F.softmax(x.detach(), 2) for x in teacher)
    weight = (t_a * t_n).sum(2).mean(0)                                        # (B,)
    pmi = lambda s, t: torch.log(((s * t).clamp_min(PROB_FLOOR) ** beta / priors[:, None]).sum(2))  # (H, B)
    return -(weight * (pmi(s_a, t_n) + pmi(s_n, t_a)) / 2).mean(1)


def ema_prior(priors: torch.Tensor, teacher_probs: torch.Tensor, momentum: float) -> torch.Tensor:
    """TEMI's cluster prior after one batch: ``momentum * priors + (1 - momentum) * mean_batch
    teacher_probs``; ``priors`` ``(H, K)``, ``teacher_probs`` ``(H, B, K)``."""
    return momentum * priors + (1 - momentum) * teacher_probs.mean(1)


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """Every parameter of ``teacher`` becomes ``momentum * teacher + (1 - momentum) * student``
    (the two modules built alike); buffers (BatchNorm statistics) stay the teacher's own."""
    for mine, theirs in zip(teacher.parameters(), student.parameters(), strict=True):
        mine.mul_(momentum).add_(theirs.detach(), alpha=1 - momentum)


class TemiTeacher:
    """The teacher heads of TEMI and their cluster priors: a copy of the ``student`` model that
    follows it by EMA (``config.teacher_momentum`` per step) and priors ``(H, K)`` that start equal
    and follow the teacher's mean probabilities (``config.prior_momentum``). ``student`` holds a
    :class:`ClusterHeads` (alone, or after an encoder). A resumed training starts a new teacher from
    the resumed student."""

    def __init__(self, student: nn.Module, config: ScanConfig):
        heads = next(m for m in student.modules() if isinstance(m, ClusterHeads))
        self.model = copy.deepcopy(student).requires_grad_(False)
        self.config = config
        self.priors = torch.full((heads.num_heads, heads.num_clusters), 1 / heads.num_clusters,
                                 device=next(student.parameters()).device)

    def loss(self, batch: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
        """The :func:`temi_loss` ``(H,)`` of the student's logits ``(H, 2B, K)`` on ``batch`` (B anchors
        then their B partners), the priors first updated with the teacher's probabilities there."""
        with torch.no_grad():
            taught = gather(self.model(batch[local_rows(len(batch))]).float(), dim=1)   # (H, 2B, K)
            self.priors = ema_prior(self.priors, F.softmax(taught, 2), self.config.prior_momentum)
        half = student.shape[1] // 2
        return temi_loss((student[:, :half], student[:, half:]), (taught[:, :half], taught[:, half:]),
                         self.priors, self.config.beta)

    def follow(self, student: nn.Module) -> None:
        ema_update(self.model, student, self.config.teacher_momentum)


class ClusterHeads(nn.Module):
    """``num_heads`` independent heads ``in_dim -> K``: ``(B, in_dim) -> (num_heads, B, K)`` logits.

    With ``hidden > 0`` each head is a two-layer MLP (``in_dim -> hidden -> K``), else linear.
    """

    def __init__(self, in_dim: int, num_clusters: int, num_heads: int = 1, hidden: int = 0):
        super().__init__()
        if num_clusters < 2:
            raise ValueError(f"num_clusters must be >= 2, got {num_clusters}")
        if num_heads < 1:
            raise ValueError(f"num_heads must be >= 1, got {num_heads}")
        self.num_clusters, self.num_heads = num_clusters, num_heads
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                          nn.Linear(hidden, num_clusters)) if hidden else nn.Linear(in_dim, num_clusters)
            for _ in range(num_heads))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.stack([head(features) for head in self.heads])


class ConsensusHeads(nn.Module):
    """Every head of a :class:`ClusterHeads` voting as one: ``(B, in_dim) -> (1, B, K)``, the log of
    the mean of the heads' probabilities after head ``h``'s cluster ``j`` is renumbered
    ``order[h, j]`` (:func:`consensus_order`). Its softmax is that mean, so it stands wherever a
    one-head model does (self-labeling, refine, inference) and trains all the heads it averages.
    """

    order: torch.Tensor

    def __init__(self, members: ClusterHeads, order: torch.Tensor | np.ndarray):
        super().__init__()
        order = torch.as_tensor(order, dtype=torch.long)
        if order.shape != (members.num_heads, members.num_clusters):
            raise ValueError(f"order must be (heads, K) = ({members.num_heads}, {members.num_clusters}), "
                             f"got {tuple(order.shape)}")
        if not torch.equal(order.sort(1).values, torch.arange(members.num_clusters).expand_as(order)):
            raise ValueError("every row of order must be a permutation of the K clusters")
        self.members = members
        self.num_clusters, self.num_heads = members.num_clusters, 1
        self.register_buffer("order", order)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        probs = F.softmax(self.members(features), 2)                      # (H, B, K)
        aligned = torch.empty_like(probs).scatter_(2, self.order[:, None, :].expand_as(probs), probs)
        return torch.log(aligned.mean(0).clamp_min(PROB_FLOOR))[None]


def consensus_order(probs: np.ndarray, reference: np.ndarray, rounds: int = 3) -> np.ndarray:
    """How to renumber each head's clusters onto their consensus ``(H, K)``: head ``h``'s cluster
    ``j`` is the consensus's ``order[h, j]``.

    Each head is matched to the current consensus by the Hungarian assignment on their contingency
    table; the consensus starts at ``reference`` (the kept head's clusters) and becomes the argmax
    of the matched heads' mean probabilities, ``rounds`` times. Heads that split the same images
    differently (measured: 0.35-0.50 ACC among the heads of one run on clip art) then outvote one
    head's mistakes; where they agree it changes nothing (bench/RESULTS.md).

    Args:
        probs: ``(H, N, K)`` every head's probabilities (read a head at a time: it may be on disk).
        reference: ``(N,)`` cluster ids the first matching is made against.
    """
    from scipy.optimize import linear_sum_assignment
    probs, reference = np.asarray(probs), np.asarray(reference)  # no copy: a memory map is read a head at a time
    if probs.ndim != 3 or reference.shape != probs.shape[1:2]:
        raise ValueError(f"probs must be (H, N, K) and reference (N,), got {probs.shape} and {reference.shape}")
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    heads, n, k = probs.shape
    order = np.zeros((heads, k), dtype=np.int64)
    for _ in range(rounds):
        total = np.zeros((n, k), np.float32)  # the matched heads' probabilities summed, a head at a time
        for h in range(heads):
            head = np.asarray(probs[h])
            table = np.bincount(head.argmax(1) * k + reference, minlength=k * k).reshape(k, k)
            rows, cols = linear_sum_assignment(-table)
            order[h, rows] = cols
            total[:, order[h]] += head
        reference = total.argmax(1)
    return order


def size_entropy(clusters: np.ndarray) -> float:
    """Entropy (nats) of the cluster sizes of ``clusters`` ``(N,)``: ``ln K`` when all K are equal."""
    shares = np.bincount(clusters) / len(clusters)
    shares = shares[shares > 0]
    return float(-(shares * np.log(shares)).sum())


def merged_away(before: np.ndarray, after: np.ndarray, num_clusters: int) -> bool:
    """Whether the clusters ``after`` ``(N,)`` lost some of ``before``'s: the entropy of their sizes
    fell by more than :data:`SIZE_ENTROPY_TOLERANCE` of its maximum ``ln K``. Agreement-based
    steps (a consensus, self-labeling) can win neighbour agreement by merging; this says so."""
    return size_entropy(after) < size_entropy(before) - SIZE_ENTROPY_TOLERANCE * np.log(num_clusters)


def split_validation(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random disjoint ``(train_index, val_index)`` of ``range(n)``."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(n * fraction)))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


@torch.no_grad()
def head_losses(model: nn.Module, inputs: Callable[[np.ndarray], torch.Tensor], anchors: np.ndarray,
                neighbors: np.ndarray, entropy_weight: float, prior: torch.Tensor | None = None,
                batch_size: int = 4096) -> np.ndarray:
    """Total SCAN loss ``(num_heads,)`` of every head over all (anchor, neighbour) pairs of
    ``anchors`` with ``neighbors`` ``(len(anchors), k)`` - never an N x N matrix; ``prior``: the
    target cluster sizes ``(K,)`` of its size term (None: equal)."""
    was_training = model.training
    model.eval()
    logits = torch.cat([model(inputs(anchors[s:s + batch_size])) for s in range(0, len(anchors), batch_size)], 1)
    index = {a: i for i, a in enumerate(anchors.tolist())}
    outside = np.setdiff1d(np.unique(neighbors), anchors)
    if len(outside):
        extra = torch.cat([model(inputs(outside[s:s + batch_size])) for s in range(0, len(outside), batch_size)], 1)
        logits = torch.cat([logits, extra], 1)
        index.update({o: len(anchors) + i for i, o in enumerate(outside.tolist())})
    rows = torch.as_tensor(np.vectorize(index.__getitem__)(neighbors))
    k = neighbors.shape[1]
    anchor_rows = torch.arange(len(anchors)).repeat_interleave(k)
    losses = [scan_loss(head[anchor_rows], head[rows.reshape(-1)], entropy_weight, prior)[0].item() for head in logits]
    model.train(was_training)
    return np.array(losses)


@dataclass(frozen=True)
class Snapshot:
    """All heads at the end of one epoch: the model's weights ``state`` (on the CPU), every head's
    held-out ``losses`` ``(H,)`` and its cluster ``clusters`` ``(H, N)`` for every image."""

    epoch: int
    state: dict
    losses: torch.Tensor
    clusters: torch.Tensor


def snapshot_epochs(epochs: int, count: int) -> list[int]:
    """The ``count`` (at most) epochs, evenly spaced from the half of ``epochs`` to the last, at
    which every head becomes a candidate; ``count`` 1: the last epoch only."""
    if epochs < 1 or count < 1:
        raise ValueError(f"epochs and count must be at least 1, got {epochs} and {count}")
    return sorted({int(round(e)) for e in np.linspace(epochs, epochs / 2, count)} - {0})


def train_scan(model: nn.Module, inputs: Callable[[np.ndarray], torch.Tensor],
               eval_inputs: Callable[[np.ndarray], torch.Tensor], neighbors: np.ndarray,
               config: ScanConfig, seed: int = 0,
               on_step: Callable[[int, int, float], None] | None = None,
               checkpoint: Checkpoint | None = None, precision: str = "float32",
               prior: np.ndarray | None = None) -> list[Snapshot]:
    """Train all heads of ``model`` with the SCAN loss (or TEMI's, ``config.loss``); return a
    :class:`Snapshot` of them at each of :func:`snapshot_epochs` (``config.snapshots``), scored by
    the SCAN loss on held-out anchors and their first ``config.val_neighbors`` neighbours.

    Args:
        model: maps ``inputs(index)`` to logits ``(num_heads, B, K)``.
        inputs: training batch of model inputs for an index array (features, augmented images).
        eval_inputs: the same without augmentation, for scoring the heads on held-out images.
        neighbors: ``(N, k)`` mined neighbour indices; each anchor is paired with a uniformly drawn
            one of its ``k`` neighbours or itself (itself too when that neighbour is held out).
        checkpoint: where to continue from and to save every finished epoch to, if given.
        precision: of the forward passes (:mod:`.precision`); the losses are float32.
        prior: ``(K,)`` target cluster sizes of the SCAN loss's size term (:func:`size_term`); None: equal.
    """
    n = len(neighbors)
    train_index, val_index = split_validation(n, config.val_fraction, seed)
    held_out = np.isin(np.arange(n), val_index)
    k = neighbors.shape[1]
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    batches = Batches(len(train_index), per_rank(min(config.batch_size, len(train_index))), config.epochs)
    model.train()
    parallel, device = data_parallel(model), next(model.parameters()).device
    amp = Amp(precision, device)
    first_epoch = checkpoint.resume(model, optimizer, rng) if checkpoint else 0
    saved: list[dict] = (checkpoint.extra or []) if checkpoint and first_epoch else []
    snapshots = [Snapshot(**snapshot) for snapshot in saved]
    take = set(snapshot_epochs(config.epochs, config.snapshots))
    target = None if prior is None else torch.as_tensor(prior, dtype=torch.float32, device=device)
    teacher = TemiTeacher(model, config) if config.loss == "temi" else None

    def end_of_epoch(epochs: int) -> None:
        if epochs in take:
            losses = head_losses(model, eval_inputs, val_index, neighbors[val_index, :config.val_neighbors],
                                 config.entropy_weight, target)
            snapshots.append(Snapshot(epochs, {key: value.detach().cpu().clone() for key, value in model.state_dict().items()},
                                      torch.as_tensor(losses), torch.as_tensor(predict_clusters(model, eval_inputs, n))))
        if checkpoint and is_main():
            checkpoint.save(epochs, model, optimizer, rng, extra=[vars(snapshot) for snapshot in snapshots])

    for step, anchors in batches(train_index, rng, first_epoch, end_of_epoch):
        choice = rng.integers(0, k + 1, len(anchors))  # 0 = the anchor itself
        partners = np.where(choice == 0, anchors, neighbors[anchors, np.maximum(choice - 1, 0)])
        partners = np.where(held_out[partners], anchors, partners)
        with seeded(seed, step, device):  # the global batch's inputs
            batch = inputs(np.concatenate([anchors, partners]))
        with amp.autocast():
            mine = parallel(batch[local_rows(len(batch))])
        logits = gather(mine.float(), dim=1)  # this rank's rows, then every rank's
        if teacher is None:
            anchor_logits, partner_logits = logits[:, :len(anchors)], logits[:, len(anchors):]
            loss = sum((scan_loss(a, p, config.entropy_weight, target)[0] for a, p in zip(anchor_logits, partner_logits)),
                       torch.zeros((), device=logits.device))
        else:
            loss = teacher.loss(batch, logits).sum()
        amp.step(loss, optimizer)
        if teacher is not None:
            teacher.follow(model)
        if on_step:
            on_step(step, batches.total_steps, loss.item() / len(logits))
    return snapshots


def head_agreement(clusters: np.ndarray) -> np.ndarray:
    """Mean adjusted Rand index ``(H,)`` of each head's partition with the other heads'.

    Args:
        clusters: ``(H, N)`` cluster id of every image under each of ``H >= 2`` heads.
    """
    from sklearn.metrics import adjusted_rand_score
    clusters = np.asarray(clusters)
    if clusters.ndim != 2 or len(clusters) < 2:
        raise ValueError(f"clusters must be (H, N) with H >= 2 heads, got shape {clusters.shape}")
    heads = len(clusters)
    pairs = np.eye(heads)
    for a in range(heads):
        for b in range(a + 1, heads):
            pairs[a, b] = pairs[b, a] = adjusted_rand_score(clusters[a], clusters[b])
    return (pairs.sum(1) - 1) / (heads - 1)


def choose_head(clusters: np.ndarray, losses: np.ndarray) -> tuple[int, np.ndarray]:
    """The candidate to keep and every candidate's agreement: among the candidates (heads, at one or
    more epochs) whose :func:`head_agreement` is within :data:`AGREEMENT_MARGIN` of the highest, the
    one with the lowest held-out loss.

    Args:
        clusters: ``(C, N)`` cluster id of every image under each of ``C`` candidates.
        losses: ``(C,)`` their held-out SCAN losses.
    """
    clusters, losses = np.asarray(clusters), np.asarray(losses)
    if len(clusters) != len(losses):
        raise ValueError(f"{len(clusters)} heads' clusters but {len(losses)} losses")
    if len(clusters) == 1:
        return 0, np.ones(1)
    agreement = head_agreement(clusters)
    near = np.flatnonzero(agreement >= agreement.max() - AGREEMENT_MARGIN)
    return int(near[np.argmin(losses[near])]), agreement


@torch.no_grad()
def _predicted(model: nn.Module, inputs: Callable[[np.ndarray], torch.Tensor], n: int,
               batch_size: int) -> Iterator[tuple[slice, np.ndarray]]:
    """``(rows, probs)`` for every ``batch_size`` images of ``n`` in order: every head's soft
    assignment ``(H, B, K)`` float32 of the images ``rows``, the model in eval mode meanwhile."""
    was_training = model.training
    model.eval()
    try:
        for start in range(0, n, batch_size):
            rows = slice(start, min(n, start + batch_size))
            yield rows, F.softmax(model(inputs(np.arange(rows.start, rows.stop))).float(), 2).cpu().numpy()
    finally:
        model.train(was_training)


def predict(model: nn.Module, inputs: Callable[[np.ndarray], torch.Tensor], n: int, head: int | None = None,
            batch_size: int = 4096, out: np.ndarray | None = None) -> np.ndarray:
    """Soft assignments float32 of head ``head`` ``(N, K)``, or of every head ``(H, N, K)`` when
    ``head`` is None, for all ``n`` images; written into ``out`` when given (an on-disk array,
    :func:`~scan_core.data.artifacts.scratch_array`, holds no more than a batch in memory)."""
    for rows, probs in _predicted(model, inputs, n, batch_size):
        if out is None:
            out = np.empty((n, probs.shape[2]) if head is not None else (len(probs), n, probs.shape[2]), np.float32)
        if head is None:
            out[:, rows] = probs
        else:
            out[rows] = probs[head]
    assert out is not None  # n >= 1 images
    return out


def predict_clusters(model: nn.Module, inputs: Callable[[np.ndarray], torch.Tensor], n: int,
                     batch_size: int = 4096) -> np.ndarray:
    """Every head's cluster ``(H, N)`` of all ``n`` images, in the smallest unsigned integer type
    that holds K (one byte up to 256 clusters): what a candidate head is judged on."""
    out = None
    for rows, probs in _predicted(model, inputs, n, batch_size):
        if out is None:
            out = np.empty((len(probs), n), np.min_scalar_type(probs.shape[2] - 1))
        out[:, rows] = probs.argmax(2)
    assert out is not None
    return out
