"""The thread governor: torch gets the cores other processes leave free (issue 12, item 5)."""
import os
import subprocess
import sys
import time

import pytest
import torch

from scan_core.engine.threads import ThreadGovernor, machine_busy_seconds, threads_for


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

    def __init__(self):
        self.now, self.machine, self.own = 0.0, 0.0, 0.0

    def advance(self, seconds: float, own_rate: float, others_rate: float) -> None:
        self.now += seconds
        self.own += own_rate * seconds
        self.machine += (own_rate + others_rate) * seconds


def test_governor_follows_the_load_of_other_processes():
    fake = FakeMachine()
    governor = ThreadGovernor(cores=4, interval=1.0, machine_busy=lambda: fake.machine, own_busy=lambda: fake.own,
                              clock=lambda: fake.now)
    assert governor.threads == 4 and torch.get_num_threads() == 4
    fake.advance(0.5, own_rate=4, others_rate=2)
    assert governor.adjust() == 4            # within the interval: not measured yet
    fake.advance(0.6, own_rate=2.5, others_rate=1.5)
    assert governor.adjust() == 2            # others used (1 + 0.9) / 1.1 = 1.73 cores: 4 - 1.73 + 0.25 -> 2
    assert torch.get_num_threads() == 2
    fake.advance(2.0, own_rate=2, others_rate=0.0)
    assert governor.adjust() == 4            # the others stopped
    assert torch.get_num_threads() == 4
    torch.set_num_threads(max(1, os.cpu_count() or 1))


@pytest.mark.skipif(machine_busy_seconds() is None or (os.cpu_count() or 1) < 2, reason="needs /proc/stat and 2 cores")
def test_governor_gives_up_a_core_beside_a_real_busy_process():
    governor = ThreadGovernor(interval=0.5)
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.7)
        assert governor.adjust() <= governor.cores - 1
        assert torch.get_num_threads() == governor.threads
    finally:
        hog.kill()
        torch.set_num_threads(max(1, os.cpu_count() or 1))


def test_a_run_adjusts_its_threads_at_every_step(tmp_path, digits, monkeypatch):
    # the governor is wired into the run's progress: every training step may re-measure
    from scan_core.engine.run import train_run
    calls = []
    original = ThreadGovernor.adjust
    monkeypatch.setattr(ThreadGovernor, "adjust", lambda self: calls.append(1) or original(self))
    train_run(tmp_path / "run", "digits", preset="tiny", show_bar=False)
    assert len(calls) > 20
