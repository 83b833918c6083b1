"""The thread governor: torch and every other thread pool get the cores other processes leave free
(issue 12, item 5)."""
import json
import os
import subprocess
import sys
import time

import pytest
import torch
from threadpoolctl import ThreadpoolController

from scan_core.engine.threads import ThreadGovernor, machine_busy_seconds, threads_for

CORES = max(1, os.cpu_count() or 1)


@pytest.fixture
def restored_pools():
    """Every thread pool back on all cores after the test (the governor leaves its choice set)."""
    yield
    torch.set_num_threads(CORES)
    ThreadpoolController().limit(limits=CORES)
    if "numba" in sys.modules:
        sys.modules["numba"].set_num_threads(CORES)


def pool_threads() -> dict[str, int]:
    """The threads of every pool the process has loaded, read back from each library itself:
    torch's, faiss's, every OpenMP and BLAS library threadpoolctl finds, and numba's when loaded."""
    import faiss
    pools = {"torch": torch.get_num_threads(), "faiss": faiss.omp_get_max_threads()}
    pools.update({f"{info['prefix']} {info['filepath']}": info["num_threads"] for info in ThreadpoolController().info()})
    if "numba" in sys.modules:
        pools["numba"] = sys.modules["numba"].get_num_threads()
    return pools


@pytest.mark.parametrize(("cores", "others", "expected"), [
    (2, 0.0, 2), (2, 0.2, 2), (2, 0.3, 1), (2, 1.0, 1), (2, 3.0, 1),
    (8, 0.0, 8), (8, 1.0, 7), (8, 2.6, 5), (8, 2.8, 5), (8, 2.7, 5), (1, 0.0, 1)])
def test_threads_for_gives_the_free_cores(cores, others, expected):
    # free cores = cores - others, rounded down once others take more than a quarter of a core
    assert threads_for(cores, others) == expected


def test_threads_for_rejects_no_cores():
    with pytest.raises(ValueError, match="cores must be at least 1"):
        threads_for(0, 0.0)


class FakeMachine:
    """Readings of a machine where this process and others run at set rates (cores busy)."""

    def __init__(self, others_rate: float = 0.0):
        self.now, self.machine, self.own = 0.0, 0.0, 0.0
        self.others_rate = others_rate

    def governor(self, cores: int) -> ThreadGovernor:
        """A governor on this machine; it looks while this process waits and the others run on."""
        return ThreadGovernor(cores=cores, interval=1.0, machine_busy=lambda: self.machine, own_busy=lambda: self.own,
                              clock=lambda: self.now, sleep=lambda s: self.advance(s, 0.0, self.others_rate))

    def advance(self, seconds: float, own_rate: float, others_rate: float) -> None:
        self.now += seconds
        self.own += own_rate * seconds
        self.machine += (own_rate + others_rate) * seconds


def test_governor_follows_the_load_of_other_processes(restored_pools):
    fake = FakeMachine()
    governor = fake.governor(cores=4)
    assert governor.threads == 4 and torch.get_num_threads() == 4
    fake.advance(0.5, own_rate=4, others_rate=2)
    assert governor.adjust() == 4            # within the interval: not measured yet
    fake.advance(0.6, own_rate=2.5, others_rate=1.5)
    assert governor.adjust() == 2            # others used (1 + 0.9) / 1.1 = 1.73 cores: 4 - 1.73 + 0.25 -> 2
    assert torch.get_num_threads() == 2
    fake.advance(2.0, own_rate=2, others_rate=0.0)
    assert governor.adjust() == 4            # the others stopped
    assert torch.get_num_threads() == 4


@pytest.mark.parametrize(("others", "expected"), [(0.0, 4), (0.2, 4), (0.5, 3), (1.8, 2), (3.5, 1)])
def test_the_first_choice_is_measured_before_any_work(others, expected, restored_pools):
    # others busy from the start: 4 - others + 0.25 rounded down, already when the run begins
    governor = FakeMachine(others_rate=others).governor(cores=4)
    assert governor.threads == expected and torch.get_num_threads() == expected


def test_every_pool_holds_the_choice_and_a_drifted_one_is_set_again(restored_pools):
    import numba
    import numpy as np

    @numba.njit(parallel=True)
    def parallel_sum(values):  # a parallel loop, as UMAP's: numba's OpenMP layer sets its own thread count
        total = 0.0
        for i in numba.prange(len(values)):
            total += values[i]
        return total

    fake = FakeMachine(others_rate=1.5)
    governor = fake.governor(cores=2)            # 2 - 1.5 + 0.25 -> 1 thread
    assert governor.threads == 1
    torch.get_num_threads()
    assert parallel_sum(np.arange(1000.0)) == 499500.0
    assert governor.adjust() == 1                # within the interval: nothing measured, the pools set again
    pools = pool_threads()
    assert {"torch", "faiss", "numba"} <= set(pools) and any("openblas" in name for name in pools)
    assert pools == dict.fromkeys(pools, 1)
    torch.set_num_threads(2)                     # a pool changed behind the governor's back
    assert governor.adjust() == 1 and torch.get_num_threads() == 1


def busy_processes(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


@pytest.mark.skipif(machine_busy_seconds() is None or CORES < 2, reason="needs /proc/stat and 2 cores")
def test_governor_gives_up_a_core_beside_a_real_busy_process(restored_pools):
    governor = ThreadGovernor(interval=0.5)
    hogs = busy_processes(1)
    try:
        time.sleep(0.7)
        assert governor.adjust() <= governor.cores - 1
        assert torch.get_num_threads() == governor.threads
    finally:
        for hog in hogs:
            hog.kill()


@pytest.mark.skipif(machine_busy_seconds() is None or CORES < 2, reason="needs /proc/stat and 2 cores")
def test_beside_more_busy_processes_than_cores_every_pool_starts_on_one_thread(restored_pools):
    hogs = busy_processes(CORES + 1)
    try:
        time.sleep(0.3)
        governor = ThreadGovernor()              # the others keep every core busy: one thread from the start
        assert governor.threads == 1
        pools = pool_threads()
        assert pools == dict.fromkeys(pools, 1)
    finally:
        for hog in hogs:
            hog.kill()


def test_a_run_adjusts_its_threads_at_every_step(tmp_path, digits, monkeypatch, restored_pools):
    # the governor is wired into the run's progress: every step and every stage start may re-measure,
    # and torch computes on the governor's threads after each
    from scan_core.engine.progress import Progress
    from scan_core.engine.run import train_run
    calls, steps = [], []
    adjust, step = ThreadGovernor.adjust, Progress.step

    def adjusted(self):
        threads = adjust(self)
        calls.append(threads == self.threads == torch.get_num_threads())
        return threads

    monkeypatch.setattr(ThreadGovernor, "adjust", adjusted)
    monkeypatch.setattr(Progress, "step", lambda self, *args, **kwargs: steps.append(1) or step(self, *args, **kwargs))
    train_run(tmp_path / "run", "digits", preset="tiny", show_bar=False)
    events = [json.loads(line) for line in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    stages = sum(event["kind"] == "stage_start" for event in events)
    assert stages == 5 and len(steps) > 20  # images, pretext, neighbors, scan, selflabel (tiny: no UMAP)
    assert len(calls) == len(steps) + stages and all(calls)
