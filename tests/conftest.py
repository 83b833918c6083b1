import os

import pytest
import torch

torch.set_num_threads(max(1, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def digits():
    from scan_core.sources import load_digits
    return load_digits()
