"""The processes of one run: a single one, or the ranks ``torchrun`` starts.

``torchrun --standalone --nproc-per-node N -m scan_core train ...`` (or ``--nnodes`` with a c10d
rendezvous) starts N copies of the same command with ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in
their environment; :func:`process_group` joins them into one ``torch.distributed`` group: gloo for
CPU tensors and, with CUDA, NCCL for CUDA ones, each rank on the GPU of its local rank.

Rank 0 plans the run (:func:`on_rank_zero`; :func:`share` hands its config to the others) and is the only one that
writes: on every other rank :func:`scan_core.data.artifacts.set_writes` is off, so their artifacts,
checkpoints, events and status are not written. Every rank trains (the loops of
:mod:`scan_core.method.distributed`) and embeds its share of the images; the stages that do neither
(images, manifold, neighbours, suggestion, projection) run on rank 0 while the others wait at a
barrier and then load what it wrote (a multi-node run needs the run directory on a shared file
system). When a rank dies, torchrun stops the others; rank 0 records which one (:func:`stopped`),
and the run resumes from its checkpoints, with any number of ranks.
"""
from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist

from ..data.artifacts import set_writes
from ..data.rundir import process_alive, process_start
from ..method.distributed import world

T = TypeVar("T")

#: How long a rank waits at a collective for the others: rank 0 mines and maps alone meanwhile.
WAIT = timedelta(hours=12)


@contextlib.contextmanager
def process_group(device: str = "auto") -> Iterator[None]:
    """Within the block, this process is a rank of the group torchrun's environment describes (none
    when ``WORLD_SIZE`` is absent or 1). ``device``: the run's ``--device``; ``cpu`` keeps CUDA out."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1 or dist.is_initialized():
        yield
        return
    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    dist.init_process_group("cpu:gloo,cuda:nccl" if cuda else "gloo", timeout=WAIT)
    set_writes(dist.get_rank() == 0)
    try:
        yield
    finally:
        set_writes(True)
        dist.destroy_process_group()


def local_cores() -> int:
    """The CPU cores of this machine that are this rank's: all of them shared by its local ranks."""
    return max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def barrier() -> None:
    """Wait until every rank gets here (nothing alone)."""
    if world()[1] > 1:
        dist.barrier()


class RankZeroFailed(ValueError):
    """What rank 0 raised while planning the run, raised on the other ranks too."""


def share(value: T) -> T:
    """Rank 0's ``value`` on every rank. When rank 0 passes the exception that stopped it, the other
    ranks raise :class:`RankZeroFailed` with its message (and rank 0 gets it back to raise)."""
    rank, size = world()
    if size == 1:
        return value
    sent = [("error", f"{value}") if isinstance(value, BaseException) else ("ok", value)]
    dist.broadcast_object_list(sent, src=0)
    kind, received = sent[0]
    if kind == "error" and rank:
        raise RankZeroFailed(f"rank 0 stopped: {received}")
    return value if rank == 0 else received  # type: ignore[return-value]


def on_rank_zero(make: Callable[[], T]) -> T | None:
    """``make()`` on rank 0 alone, its value returned there (None on the others); what it raises is
    raised there and, as :class:`RankZeroFailed` with its message, on the others. Every rank calls it."""
    value, failure = None, None
    if world()[0] == 0:
        try:
            value = make()
        except BaseException as error:
            failure = error
    share(failure)
    if failure is not None:
        raise failure
    return value


@dataclass(frozen=True)
class Peer:
    """One rank's process: where it runs and how to recognise it (its start time, from ``/proc``)."""

    rank: int
    host: str
    pid: int
    pid_start: int | None

    def describe(self, size: int) -> str:
        return f"rank {self.rank} of {size} (pid {self.pid} on {self.host})"


def peers() -> list[Peer]:
    """Every rank's :class:`Peer`, in rank order (this process alone without a group)."""
    me = Peer(world()[0], socket.gethostname(), os.getpid(), process_start(os.getpid()))
    if world()[1] == 1:
        return [me]
    everyone: list[Peer | None] = [None] * world()[1]
    dist.all_gather_object(everyone, me)
    return [peer for peer in everyone if peer is not None]


def stopped(everyone: list[Peer]) -> list[Peer]:
    """The ranks on this host whose process is gone (killed, crashed): those a failure is blamed on."""
    host = socket.gethostname()
    return [peer for peer in everyone if peer.host == host and peer.pid != os.getpid()
            and not process_alive(peer.pid, peer.pid_start)]


def records(everyone: list[Peer]) -> list[dict]:
    """The ranks as ``status.json`` lists them."""
    return [asdict(peer) for peer in everyone]
