"""Where a run computes: the torch device, and the library versions it records (its CPU threads:
:mod:`scan_core.engine.threads`)."""
from __future__ import annotations

import platform

import numpy as np
import torch

from .. import __version__


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; asking for an absent CUDA is an error. CUDA is the
    current device (a rank's own GPU, :mod:`scan_core.engine.ranks`), named with its index."""
    if name not in ("auto", "cpu", "cuda"):
        raise ValueError(f"--device must be auto, cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA device is available")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device())


def versions() -> dict:
    """The versions of Python and of the libraries a run's numbers depend on."""
    import faiss
    import sklearn
    import torchvision
    return {"scan_core": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": np.__version__, "faiss": faiss.__version__,
            "scikit-learn": sklearn.__version__}
