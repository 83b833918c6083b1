"""CPU threads that follow the cores other processes leave free.

On a busy machine a fixed ``torch.set_num_threads(cores)`` collapses: torch's OpenMP threads spin at
every barrier waiting for a thread the scheduler has parked, and a training step becomes 40-300x
slower (measured: one MLP head step, 2 threads on 2 cores, 775 steps/s idle, 2.5 beside one busy
process; 149 on 1 thread). Passive waiting (``OMP_WAIT_POLICY=PASSIVE``) halves the idle speed of
small steps instead. So the run measures, before it starts and then about once a second, how much
CPU the *other* processes used (the machine's busy time less this process's own) and gives every
thread pool it computes with the cores that are left: torch's, and through threadpoolctl the
OpenMP and BLAS pools of numpy, scipy and faiss, and numba's (UMAP's) once loaded.

The pools are set again whenever one has drifted from that choice: after a numba parallel loop
(UMAP's) torch's OpenMP thread count is numba's again, every core, and a UMAP stage left the
stages after it on two threads while the governor believed one (measured on 2 cores at a load of
10-12 from other processes: the digits scan stage 530 s, about 50x its idle time, torch's second
thread spinning at barriers; the report: 28x beside a browser, a training and two extractions).
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable

import torch
from threadpoolctl import ThreadpoolController

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
    """Sets the CPU threads of torch, faiss, the BLAS libraries and numba to the cores other
    processes leave free.

    The first choice is measured over ``first_look`` seconds while the run waits, before any work.
    Then call :meth:`adjust` often from the thread that computes (each training step and each stage
    start do); it measures at most every ``interval`` seconds, and sets the pools again at once
    when one has drifted from the choice (a library loaded since, numba resetting OpenMP). Off Linux
    the others' load is the 1-minute load average less this process's own use.
    """

    def __init__(self, cores: int | None = None, interval: float = 1.0, first_look: float = 0.1,
                 machine_busy: Callable[[], float | None] = machine_busy_seconds,
                 own_busy: Callable[[], float] = own_busy_seconds, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.cores = cores or os.cpu_count() or 1
        if interval <= 0 or first_look <= 0:
            raise ValueError(f"interval and first_look must be positive, got {interval} and {first_look}")
        self.interval, self._machine_busy, self._own_busy, self._clock = interval, machine_busy, own_busy, clock
        before = self._reading()
        sleep(first_look)
        self._mark = self._reading()
        self.threads = threads_for(self.cores, self.others_busy(before, self._mark))
        self._modules = 0   # len(sys.modules) when the pools were last set
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
        """Re-measure if ``interval`` has passed; set the pools if the choice changed or one has
        drifted from it; return the thread count."""
        if threading.current_thread() is not threading.main_thread():
            return self.threads  # torch's thread count is per calling thread
        wanted = self.threads
        if self._clock() - self._mark[0] >= self.interval:
            reading = self._reading()
            wanted = threads_for(self.cores, self.others_busy(self._mark, reading))
            self._mark = reading
        if wanted != self.threads or self._drifted():
            self.threads = wanted
            self._apply()
        return self.threads

    def _drifted(self) -> bool:
        """Whether a pool may no longer hold :attr:`threads`: torch's differs, or modules (and with
        them thread pools) were loaded since the pools were set."""
        return torch.get_num_threads() != self.threads or len(sys.modules) != self._modules

    def _apply(self) -> None:
        with contextlib.suppress(ImportError):
            import faiss  # noqa: F401  (loaded now, so that its OpenMP and BLAS pools are set with the others)
        torch.set_num_threads(self.threads)
        ThreadpoolController().limit(limits=self.threads)
        numba = sys.modules.get("numba")
        if numba is not None:
            numba.set_num_threads(min(self.threads, numba.config.NUMBA_NUM_THREADS))
        self._modules = len(sys.modules)
