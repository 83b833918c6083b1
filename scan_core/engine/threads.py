"""CPU threads that follow the cores other processes leave free.

On a busy machine a fixed ``torch.set_num_threads(cores)`` collapses: torch's OpenMP threads spin at
every barrier waiting for a thread the scheduler has parked, and a training step becomes 40-300x
slower (measured: one MLP head step, 2 threads on 2 cores, 775 steps/s idle, 2.5 beside one busy
process; 149 on 1 thread). Passive waiting (``OMP_WAIT_POLICY=PASSIVE``) halves the idle speed of
small steps instead. So the run measures, about once a second, how much CPU the *other* processes
used (the machine's busy time less this process's own) and gives torch the cores that are left.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import torch

#: The share of a core others may use before a thread is given up (hysteresis against blips).
TOLERATED_SHARE = 0.25


def machine_busy_seconds() -> float | None:
    """CPU seconds all processes of the machine have run since boot (``/proc/stat``), None off Linux."""
    try:
        with open("/proc/stat") as handle:
            fields = [int(x) for x in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_busy_seconds() -> float:
    """CPU seconds this process (all its threads) has run."""
    times = os.times()
    return times.user + times.system


def threads_for(cores: int, others_busy: float) -> int:
    """Threads to use when other processes keep ``others_busy`` cores busy: the free cores, at least
    one; a core counts as taken once others use more than :data:`TOLERATED_SHARE` of it."""
    if cores < 1:
        raise ValueError(f"cores must be at least 1, got {cores}")
    return max(1, min(cores, int(cores - others_busy + TOLERATED_SHARE)))


class ThreadGovernor:
    """Sets torch's (and faiss's) CPU threads to the cores other processes leave free.

    Call :meth:`adjust` often from the thread that computes (each training step does); it measures
    at most every ``interval`` seconds. Off Linux the others' load is the 1-minute load average
    less this process's own use.
    """

    def __init__(self, cores: int | None = None, interval: float = 1.0,
                 machine_busy: Callable[[], float | None] = machine_busy_seconds,
                 own_busy: Callable[[], float] = own_busy_seconds, clock: Callable[[], float] = time.monotonic):
        self.cores = cores or os.cpu_count() or 1
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval}")
        self.interval, self._machine_busy, self._own_busy, self._clock = interval, machine_busy, own_busy, clock
        self.threads = self.cores
        self._mark = self._reading()
        self._apply()

    def _reading(self) -> tuple[float, float | None, float]:
        return self._clock(), self._machine_busy(), self._own_busy()

    def others_busy(self, before: tuple, after: tuple) -> float:
        """Cores other processes kept busy between two readings ``(clock, machine, own)``."""
        wall = after[0] - before[0]
        own = (after[2] - before[2]) / wall
        if before[1] is None or after[1] is None:
            return max(0.0, os.getloadavg()[0] - own)
        return max(0.0, (after[1] - before[1]) / wall - own)

    def adjust(self) -> int:
        """Re-measure if ``interval`` has passed, set the thread count; return it."""
        if threading.current_thread() is not threading.main_thread():
            return self.threads  # torch's thread count is per calling thread
        now = self._clock()
        if now - self._mark[0] < self.interval:
            return self.threads
        reading = self._reading()
        wanted = threads_for(self.cores, self.others_busy(self._mark, reading))
        self._mark = reading
        if wanted != self.threads:
            self.threads = wanted
            self._apply()
        return self.threads

    def _apply(self) -> None:
        torch.set_num_threads(self.threads)
        try:
            import faiss
            faiss.omp_set_num_threads(self.threads)
        except ImportError:
            pass
