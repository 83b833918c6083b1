"""Data parallelism for the training loops (``torch.distributed``, DistributedDataParallel): which
rows of a global batch this process trains on, and the gathers that make the objective the one a
single process computes at the same global batch.

Every rank draws the same global batch (the same generator, the same permutation), makes its inputs
with augmentations seeded by the step (:func:`seeded`), runs the network on its own contiguous share
of the rows (:func:`local_rows`) and gathers the outputs of every rank with their gradients
(:func:`gather`, ``torch.distributed.nn.functional.all_gather``). Each rank then computes the loss of
the whole global batch: NT-Xent takes its negatives from every rank and SCAN's entropy term sees the
global mean. The gather's backward sums each rank's share of the gradient over the ranks' copies of
the loss, and DDP averages the parameters' gradients over the ranks, so every step's gradient is the
single process's (the bug lightly fixed in lightly#1531 was a gather that did not sum). BatchNorm
takes its statistics over the global batch too (:class:`GlobalBatchNorm`: torch's ``SyncBatchNorm``
runs on GPUs only, and the CPU ranks of a laptop or a CI machine need the same objective).

Passes that only embed (:func:`shard` and :func:`gather_rows`) split their rows across the ranks
and gather the results on every rank. Inside :func:`alone` (a stage rank 0 runs by itself while the
others wait) every helper here behaves as in one process.

Without an initialised process group everything here is the identity: one process, all rows.
"""
from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import TypeVar

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

Module = TypeVar("Module", bound=nn.Module)
STEP_SEED = 1_000_003  # a step's augmentation seed: seed * STEP_SEED + step
_alone = [0]  # depth of :func:`alone` blocks


def world() -> tuple[int, int]:
    """``(rank, world size)`` of this process: ``(0, 1)`` without a process group or inside :func:`alone`."""
    if dist.is_available() and dist.is_initialized() and not _alone[0]:
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@contextlib.contextmanager
def alone() -> Iterator[None]:
    """Within the block this process computes as if it were the only one (no collective is called):
    for the stages rank 0 runs by itself while the other ranks wait."""
    _alone[0] += 1
    try:
        yield
    finally:
        _alone[0] -= 1


def is_main() -> bool:
    """Whether this process writes (rank 0, or the only process)."""
    return world()[0] == 0


def per_rank(batch_size: int) -> int:
    """``batch_size`` rounded down to a multiple of the world size (at least the world size)."""
    size = world()[1]
    return max(size, batch_size - batch_size % size)


def local_rows(rows: int) -> slice:
    """This rank's contiguous share of a global batch of ``rows`` rows (all of them alone)."""
    rank, size = world()
    if rows % size:
        raise ValueError(f"a global batch of {rows} rows does not split evenly over {size} ranks")
    share = rows // size
    return slice(rank * share, (rank + 1) * share)


def _shard_bounds(rows: int, size: int) -> np.ndarray:
    """Where each of ``size`` ranks' shares of ``rows`` rows starts, and the end ``(size + 1,)``."""
    return np.linspace(0, rows, size + 1).round().astype(int)


def shard(rows: int) -> slice:
    """This rank's contiguous share of ``rows`` rows of a pass that only embeds (shares differ by
    one row at most when they do not split evenly); all of them alone."""
    rank, size = world()
    bounds = _shard_bounds(rows, size)
    return slice(int(bounds[rank]), int(bounds[rank + 1]))


def gather_rows(local: np.ndarray, rows: int) -> np.ndarray:
    """Every rank's :func:`shard` of a ``(rows, ...)`` result concatenated in rank order, on every
    rank (``local`` itself alone). The shares go over the CPU group (gloo), padded to one size."""
    size = world()[1]
    if size == 1:
        return local
    bounds = _shard_bounds(rows, size)
    longest = int(np.diff(bounds).max())
    padded = torch.zeros((longest, *local.shape[1:]), dtype=torch.from_numpy(local[:0]).dtype)
    padded[:len(local)] = torch.from_numpy(np.ascontiguousarray(local))
    parts = [torch.empty_like(padded) for _ in range(size)]
    dist.all_gather(parts, padded)
    return np.concatenate([part[:end - start].numpy() for part, start, end in zip(parts, bounds[:-1], bounds[1:])])


def broadcast_state(module: Module) -> Module:
    """``module`` with rank 0's parameters and buffers on every rank (in place): for what is fitted
    rather than trained (a PCA), so that every rank embeds with the same one."""
    if world()[1] > 1:
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)
    return module


@contextlib.contextmanager
def _deprecated_collectives() -> Iterator[None]:
    """A block in which torch's collectives that carry gradients warn nothing: torch 2.14 calls them
    deprecated, pointing to a private module; they stay until a public replacement exists, without a
    warning per rank and step. The warnings filter is the caller's again afterwards."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"torch\.distributed\.nn\.functional\.all_(gather|reduce) is deprecated",
                                FutureWarning)
        yield


def gather(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Every rank's ``x`` concatenated along ``dim`` in rank order (the global batch when ``x`` is
    this rank's :func:`local_rows`), gradients flowing back to each rank's own part."""
    if world()[1] == 1:
        return x
    from torch.distributed.nn.functional import all_gather
    with _deprecated_collectives():
        parts = all_gather(x.contiguous())
    return torch.cat(parts, dim)


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch: each rank's per-channel
    sums and sums of squares added over the ranks by an all-reduce that carries gradients; alone,
    or in eval mode, plain BatchNorm. Works on any device (gloo on CPU, NCCL on GPU)."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"GlobalBatchNorm expects (B, C, ...) inputs, got shape {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or world()[1] == 1:
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce
        channels, dims = x.shape[1], [0, *range(2, x.dim())]
        count = torch.full((1,), x.numel() // channels, dtype=x.dtype, device=x.device)
        with _deprecated_collectives():
            sums = all_reduce(torch.cat([x.sum(dims), (x * x).sum(dims), count]))
        total = sums[-1]
        mean = sums[:channels] / total
        var = (sums[channels:2 * channels] / total - mean * mean).clamp_min(0)
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                momentum = 0.1 if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(var.detach() * total / (total - 1).clamp_min(1), momentum)
                self.num_batches_tracked += 1
        shape = (1, channels) + (1,) * (x.dim() - 2)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        return y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y


def global_batch_norm(model: nn.Module) -> nn.Module:
    """``model`` with every BatchNorm layer a :class:`GlobalBatchNorm` that shares its parameters
    and running statistics (in place; the state dict keeps its keys)."""
    for name, child in model.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, GlobalBatchNorm):
            synced = GlobalBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                     child.track_running_stats)
            synced._parameters, synced._buffers = child._parameters, child._buffers
            synced.train(child.training)
            setattr(model, name, synced)
        else:
            global_batch_norm(child)
    return model


def data_parallel(model: nn.Module) -> nn.Module:
    """``model`` for a training step: itself alone, else wrapped in DistributedDataParallel with its
    BatchNorm layers on the global batch (:func:`global_batch_norm`), sharing its parameters."""
    if world()[1] == 1:
        return model
    device = next(model.parameters()).device
    return nn.parallel.DistributedDataParallel(global_batch_norm(model),
                                               device_ids=[device.index] if device.type == "cuda" else None)


@contextlib.contextmanager
def seeded(seed: int, step: int, device: torch.device | str) -> Iterator[None]:
    """Torch's random draws inside seeded by ``(seed, step)``, the same on every rank, and torch's
    own generator state left as it was."""
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed * STEP_SEED + step)
        yield
