"""Fixtures every test module may use: the digits set, and ``wait_for`` to poll a condition."""
import os
import subprocess
import time

import pytest
import torch

torch.set_num_threads(max(1, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def digits():
    from scan_core.data.sources import load_digits
    return load_digits()


def _wait_for(predicate, timeout: float = 120.0, every: float = 0.2, process: subprocess.Popen | None = None,
              what: str = "the condition"):
    """Poll ``predicate()`` until it returns something true, and return that. Fail when ``timeout``
    seconds pass, or when ``process`` (if given) ends first, with the end of its stderr."""
    deadline = time.time() + timeout
    while not (value := predicate()):
        if process is not None and process.poll() is not None:
            pytest.fail(f"the process ended (code {process.returncode}) before {what}: "
                        f"{process.stderr.read().decode()[-2000:] if process.stderr else ''}")
        if time.time() > deadline:
            if process is not None:
                process.kill()
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)
    return value


@pytest.fixture
def wait_for():
    """:func:`_wait_for`: ``wait_for(predicate, timeout=120, every=0.2, process=None, what=...)``."""
    return _wait_for
