"""Where a run computes: the torch device, and the library versions it records (its CPU threads:
:mod:`scan_core.engine.threads`)."""
from __future__ import annotations

import platform

import numpy as np
import torch

from .. import __version__


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; asking for an absent CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA device is available")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"--device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


def versions() -> dict:
    """The versions of Python and of the libraries a run's numbers depend on."""
    import faiss
    import sklearn
    import torchvision
    return {"scan_core": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": np.__version__, "faiss": faiss.__version__,
            "scikit-learn": sklearn.__version__}
