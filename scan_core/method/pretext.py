"""Pretext stage: SimCLR (Chen et al., ICML 2020) as used by SCAN, and embedding of images.

A backbone plus an MLP projection head (``dim -> dim -> 128``) is trained so that two augmented
views of an image are closer to each other than to any other image of the batch (NT-Xent loss).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import AugmentConfig, PretextConfig
from ..data.artifacts import Checkpoint
from ..data.shards import Rows
from .augment import simclr_view, to_tensor
from .backbones import feature_dim
from .batches import Batches, prefetched
from .distributed import data_parallel, gather, gather_rows, is_main, local_rows, per_rank, seeded, shard
from .precision import Amp
from .whitening import WhitenedPCA


def nt_xent_loss(z_a: torch.Tensor, z_b: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Normalised-temperature cross-entropy of SimCLR.

    Args:
        z_a, z_b: projections ``(B, D)`` of the two views; row ``i`` of each is the same image.
        temperature: softmax temperature tau (> 0).

    Returns:
        Scalar: mean over the ``2B`` views of ``-log softmax(sim / tau)`` at the positive, where
        ``sim`` is the cosine similarity to the ``2B - 1`` other views.
    """
    if z_a.shape != z_b.shape or z_a.ndim != 2:
        raise ValueError(f"z_a and z_b must both be (B, D), got {tuple(z_a.shape)} and {tuple(z_b.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    b = len(z_a)
    z = F.normalize(torch.cat([z_a, z_b]), dim=1)
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    positives = torch.cat([torch.arange(b, 2 * b), torch.arange(b)]).to(z.device)
    return F.cross_entropy(logits, positives)


class SimCLRModel(nn.Module):
    """Backbone + projection head; ``forward`` returns projections ``(B, out_dim)``."""

    def __init__(self, backbone: nn.Module, out_dim: int = 128):
        super().__init__()
        dim = feature_dim(backbone)
        self.backbone = backbone
        self.projection = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(self.backbone(x))


def lr_at(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warm-up then cosine decay to zero."""
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


#: Images per batch of a pass that only embeds: in larger batches a CNN's activations leave a CPU's
#: caches and a frozen pass takes about twice as long (bench/RESULTS.md, "Pretrained backbones").
EMBED_BATCH = 64
#: Steps timed (after the first, which warms up) before ``plan`` decides how many epochs to train.
PROBE_STEPS = 8


def train_simclr(model: SimCLRModel, images: Rows, config: PretextConfig, augment: AugmentConfig,
                 device: torch.device, on_step: Callable[[int, int, float], None] | None = None,
                 seed: int = 0, checkpoint: Checkpoint | None = None,
                 plan: Callable[[float, int], int] | None = None, precision: str = "float32") -> SimCLRModel:
    """Train ``model`` on uint8 ``images`` ``(N, H, W, C)`` with NT-Xent (SimCLR, Chen et al.,
    ICML 2020) for ``config.epochs``; under ``torch.distributed`` every rank embeds its share of
    each global batch and the loss takes its negatives from all of them (:mod:`.distributed`).

    With a ``checkpoint``, training continues after its last saved epoch and every finished epoch
    is saved to it. With ``plan``, on a fresh start: after :data:`PROBE_STEPS` timed steps,
    ``plan(seconds_per_step, steps_per_epoch)`` returns the epochs to train (at most
    ``config.epochs``; the cosine schedule is stretched over those). ``precision``: of the forward
    passes (:mod:`.precision`); the next batch is read while a step trains (:meth:`Batches.loaded`).
    """
    n = len(images)
    batches = Batches(n, per_rank(min(config.batch_size, n - n % 2 if n % 2 else n)), config.epochs)  # even
    steps_per_epoch, epochs = batches.steps_per_epoch, config.epochs
    lr = config.lr * batches.batch / 256
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=config.weight_decay)
    generator = np.random.default_rng(seed)
    model.to(device).train()
    first_epoch = checkpoint.resume(model, optimizer, generator) if checkpoint else 0
    if first_epoch or batches.total_steps <= PROBE_STEPS + 1:
        plan = None  # resumed: the plan was made; or too short to be worth one
    save = (lambda done: checkpoint.save(done, model, optimizer, generator)) if checkpoint and is_main() else None
    parallel, amp = data_parallel(model), Amp(precision, device)
    timed_from = None
    # the global batch, read while the step before trains; this rank embeds its rows of it
    for step, _, x in batches.loaded(np.arange(n), generator, lambda rows: to_tensor(images[np.sort(rows)], device),
                                         first_epoch, save):
        if step > steps_per_epoch * epochs:
            break  # the plan cut the training short (its last epoch is saved)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step - 1, steps_per_epoch * epochs, lr, int(config.warmup_epochs * steps_per_epoch))
        with seeded(seed, step, device):
            view_a, view_b = simclr_view(x, augment), simclr_view(x, augment)
        mine = local_rows(len(x))
        with amp.autocast():
            z_a, z_b = parallel(view_a[mine]), parallel(view_b[mine])
        loss = nt_xent_loss(gather(z_a.float()), gather(z_b.float()), config.temperature)
        amp.step(loss, optimizer)
        if plan and step == 1:
            timed_from = time.perf_counter()
        elif plan and step == 1 + PROBE_STEPS:
            epochs = min(epochs, max(1, plan((time.perf_counter() - timed_from) / PROBE_STEPS, steps_per_epoch)))
            plan = None
        if on_step:
            on_step(step, steps_per_epoch * epochs, loss.item())
    return model.eval()


class PixelPCA(WhitenedPCA):
    """Whitened PCA of raw pixels as a module: ``(B, C, H, W)`` in [0, 1] -> ``(B, dim)``.

    A label-free feature space that needs no training; on small images its neighbours are often
    purer than a short SimCLR run's (see README, benchmarks).
    """

    @staticmethod
    def describe(x: torch.Tensor) -> torch.Tensor:
        """The pixels ``(B, H * W * C)``, in the images' own NHWC order."""
        return x.permute(0, 2, 3, 1).reshape(len(x), -1)


class Encoder(nn.Module):
    """What the clustering heads see: the concatenation of L2-normalised parts (a SimCLR
    backbone and/or :class:`PixelPCA`), ``(B, C, H, W) -> (B, sum of part dims)``."""

    def __init__(self, parts: list[nn.Module]):
        super().__init__()
        if not parts:
            raise ValueError("an Encoder needs at least one part")
        self.parts = nn.ModuleList(parts)
        self.feature_dim = sum(feature_dim(part) for part in parts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.normalize(part(x), dim=1) for part in self.parts], dim=1)


@torch.no_grad()
def embed(network: Callable[[torch.Tensor], torch.Tensor], images: Rows, device: str | torch.device,
          batch_size: int = EMBED_BATCH,
          view: Callable[[torch.Tensor], torch.Tensor] | None = None,
          on_batch: Callable[[int, int], None] | None = None, precision: str = "float32",
          out: np.ndarray | None = None) -> np.ndarray:
    """Run ``network`` in eval mode over uint8 ``images`` ``(N, H, W, C)`` -> float32 ``(N, D)``,
    its forward passes in ``precision`` (:mod:`.precision`), each batch read while the one before runs.

    ``view`` optionally transforms each batch first (e.g. a strong augmentation); ``on_batch(done,
    N)`` is called after each batch (progress, ``done`` counted over every rank); ``out``: an array
    ``(N, D)`` the rows are written into as they come and that is returned (an on-disk one,
    :func:`~scan_core.data.artifacts.write_array`, holds no more than a batch in memory). In a
    distributed run each rank embeds its :func:`~scan_core.method.distributed.shard` and every rank
    gets all rows (gathered in memory).
    """
    module = network if isinstance(network, nn.Module) else None  # a plain function is fine too
    was_training = module.training if module else False
    if module:
        module.eval()
    rows = shard(len(images))
    share = rows.stop - rows.start
    straight = out is not None and share == len(images)  # one process: each batch goes into out
    amp = Amp(precision, torch.device(device))
    outputs = []
    starts = range(rows.start, rows.stop, batch_size)  # each batch read while the one before is embedded
    for start, x in prefetched(starts, lambda at: to_tensor(images[at:min(at + batch_size, rows.stop)], device)):
        with amp.autocast():
            y = network(view(x) if view else x).float().cpu().numpy()
        if straight:
            out[start:start + len(y)] = y
        else:
            outputs.append(y)
        if on_batch is not None:
            done = min(start + batch_size, rows.stop) - rows.start
            on_batch(min(len(images), round(done * len(images) / share)), len(images))
    if module:
        module.train(was_training)
    if straight:
        return out
    every = gather_rows(np.concatenate(outputs) if outputs else np.zeros((0, 0), np.float32), len(images))
    if out is None:
        return every
    out[:] = every
    return out
